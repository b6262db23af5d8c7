"""Hash or drop features marked sensitive, before anything is stored.

A feature spec with ``sensitive: hash`` (or ``true``) keeps a keyed HMAC-SHA256 of
the value — stable, so counts, joins and categorical drift still work, but the
value cannot be read back or guessed by hashing candidates without the key.
``sensitive: drop`` removes the feature. Redaction happens in the sidecar's
ingest (and in the client's local mode), so every input path and every sink sees
only the redacted event.

>>> from mlwatch.settings import FeatureSpec, ModelSpec
>>> spec = ModelSpec(name="m", features=(FeatureSpec("email", "categorical", "hash"),
...                                      FeatureSpec("ssn", "categorical", "drop")))
>>> r = Redactor([spec], key=b"k")
>>> out = r.apply({"model": "m", "features": {"email": "a@b.c", "ssn": "1", "age": 3}})
>>> sorted(out["features"]), out["features"]["email"][:5], out["features"]["age"]
(['age', 'email'], 'hmac:', 3)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlwatch.settings import ModelSpec

KEY_FILE = "hash.key"


def load_or_create_key(configured: str | None, data_dir: str | os.PathLike[str]) -> bytes:
    """The configured key, else one random key kept in ``data_dir/hash.key`` (mode 0600).

    A stable key matters: hashes of the same value must agree across restarts.
    """
    if configured:
        return configured.encode()
    path = Path(data_dir) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


class Redactor:
    """Applies every model's sensitive-feature rules to events in place."""

    def __init__(self, models: Iterable[ModelSpec], *, key: bytes) -> None:
        self._key = key
        self._rules: dict[str, dict[str, str]] = {}
        for spec in models:
            rules = {f.name: f.sensitive for f in spec.features if f.sensitive}
            if rules:
                self._rules[spec.name] = rules

    def __bool__(self) -> bool:
        return bool(self._rules)

    def hash_value(self, value: Any) -> str:
        digest = hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()
        return "hmac:" + digest[:32]

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        rules = self._rules.get(event.get("model", ""))
        features = event.get("features")
        if not rules or not features:
            return event
        for name, action in rules.items():
            if name in features:
                if action == "drop":
                    del features[name]
                elif features[name] is not None:
                    features[name] = self.hash_value(features[name])
        return event
