"""Resolving the settings: defaults < config file < environment < keywords, each value
checked at load.

A bad value raises :class:`~mlwatch.errors.ConfigError` naming the key and where it came
from (the file, or the environment variable). A secret setting can also come from a file:
the environment variable with ``_FILE`` appended (``MLWATCH_TOKEN_FILE``), or the key with
``_file`` appended in the config file. Standard library only, so the client can use it;
YAML files need PyYAML (part of ``mlwatch[sidecar]``), a ``.json`` file needs nothing.

>>> cfg = load_config(env={"MLWATCH_SAMPLE_RATE": "0.5"})
>>> cfg.sample_rate
0.5
>>> load_config(env={"MLWATCH_SAMPLE_RATE": "2"})
Traceback (most recent call last):
...
mlwatch.errors.ConfigError: sample_rate: must be at most 1.0, got 2.0 (in MLWATCH_SAMPLE_RATE)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlwatch.errors import ConfigError, TrackingError, did_you_mean
from mlwatch.settings.config import Config, env_name, settings_fields
from mlwatch.settings.models import parse_models
from mlwatch.settings.targets import parse_targets
from mlwatch.tracking.uris import is_mlflow_uri, parse_model_uri

#: the schemes of MLflow's tracking stores (a bare host:port is a mistake caught here)
TRACKING_SCHEME = re.compile(
    r"^(https?://|file:|sqlite:|postgresql(\+\w+)?:|mysql(\+\w+)?:|mssql(\+\w+)?:|databricks)"
)


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = raw.strip().lower() if isinstance(raw, str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _to_int(raw: Any) -> int:
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _to_float(raw: Any) -> float:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _to_str(raw: Any) -> str:
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ValueError(f"expected a string, got {type(raw).__name__}")
    return str(raw)


#: The converter of each field type, by the start of its annotation.
_CONVERTERS = (("bool", _to_bool), ("int", _to_int), ("float", _to_float))


def _check_bounds(f: dataclasses.Field[Any], value: Any) -> None:
    lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
    if lo is not None and value < lo:
        raise ValueError(f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"must be at most {hi}, got {value}")
    if choices and value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    if (pattern := f.metadata.get("pattern")) and not re.fullmatch(pattern, str(value)):
        rule = f.metadata.get("rule")
        wanted = f"be {rule}" if rule else f"match {pattern}"
        raise ValueError(f"must {wanted}, got {value!r}")


def _coerce(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    """Convert a raw file/env/keyword value to the field's type, checking bounds."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = "None" in kind
    if raw is None:
        if optional:
            return None
        raise ConfigError(f.name, "must not be empty", source=source)
    convert = next((fn for prefix, fn in _CONVERTERS if kind.startswith(prefix)), _to_str)
    try:
        value = convert(raw)
        if value == "" and optional:
            return None
        _check_bounds(f, value)
    except ValueError as exc:
        raise ConfigError(f.name, str(exc), source=source) from None
    return value


def _read_secret(path: Any, source: str | None) -> str:
    """A secret kept in a file (a Kubernetes secret volume, a Docker secret): its text,
    without the trailing newline editors add."""
    try:
        return Path(str(path)).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            "config", f"cannot read secret file {path}: {exc.strerror}", source=source
        ) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            "config", f"cannot read {path}: {exc.strerror}", source=str(path)
        ) from exc
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                "config", f"invalid JSON at line {exc.lineno}: {exc.msg}", source=str(path)
            ) from exc
    else:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "config",
                "reading YAML needs PyYAML: pip install 'mlwatch[sidecar]'",
                source=str(path),
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError("config", f"invalid YAML{where}: {exc}", source=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            "config", "the top level must be a mapping of keys to values", source=str(path)
        )
    return data


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(Config) if not f.metadata.get("internal")}


def _from_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The values of a config file: ``<secret>_file`` keys read, ``models`` and
    ``targets`` parsed (a target's secrets from ``env`` or files)."""
    fields, source, values = _fields(), str(path), {}
    for key, raw in _read_file(path).items():
        secret = key[:-5] if isinstance(key, str) and key.endswith("_file") else None
        if (
            secret
            and key not in fields
            and secret in fields
            and fields[secret].metadata.get("secret")
        ):
            values[secret] = _coerce(fields[secret], _read_secret(raw, source), source)
        elif key not in fields:
            hint = did_you_mean(str(key), fields)
            raise ConfigError(str(key), f"unknown key{hint}", source=source)
        elif key == "models":
            values["models"] = parse_models(raw, source)
        elif key == "targets":
            values["targets"] = parse_targets(raw, source, env)
        elif key == "sidecar_url" and raw is False:  # YAML reads a bare `off` as false
            values[key] = "off"
        else:
            values[key] = _coerce(fields[key], raw, source)
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``MLWATCH_<KEY>``, or for a secret ``MLWATCH_<KEY>_FILE``. A variable that is no
    setting but close to one (``MLWATCH_PORTT``) is warned about: it is a typo that would
    otherwise be ignored without a word."""
    _warn_typos(env)
    values = {}
    for f in settings_fields():
        name = env_name(f.name)
        if name in env:
            values[f.name] = _coerce(f, env[name], name)
        elif f.metadata.get("secret") and env.get(name + "_FILE"):
            values[f.name] = _coerce(
                f, _read_secret(env[name + "_FILE"], name + "_FILE"), name + "_FILE"
            )
    return values


def _warn_typos(env: Mapping[str, str]) -> None:
    keys = {env_name(f.name)[8:] for f in settings_fields()}  # without MLWATCH_
    keys |= {k + "_FILE" for k in keys} | {"CONFIG"}
    for var in env:
        suffix = var[8:]
        hint = (
            did_you_mean(suffix, keys) if var.startswith("MLWATCH_") and suffix not in keys else ""
        )
        if hint:
            logging.getLogger("mlwatch").warning(
                "mlwatch: %s is not a setting and is ignored%s",
                var,
                hint.replace("'", "'MLWATCH_", 1),
            )


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Resolve the settings from defaults, the config file, the environment and keywords.

    ``path`` defaults to ``$MLWATCH_CONFIG``; ``env`` to ``os.environ``.
    """
    env = os.environ if env is None else env
    fields = _fields()
    if path is None and env.get("MLWATCH_CONFIG"):
        path = env["MLWATCH_CONFIG"]
    file_path = Path(path) if path is not None else None
    source = str(file_path) if file_path is not None else None
    values = _from_file(file_path, env) if file_path is not None else {}
    values.update(_from_env(env))
    for key, raw in overrides.items():
        if key not in fields or fields[key].metadata.get("file_only"):
            hint = did_you_mean(
                key, (k for k, f in fields.items() if not f.metadata.get("file_only"))
            )
            raise ConfigError(key, f"unknown setting{hint}", source="keyword argument")
        if raw is not None:
            values[key] = _coerce(fields[key], raw, "keyword argument")
    config = Config(source=source, **values)
    if config.window_source == "elasticsearch" and not config.elasticsearch_url:
        raise ConfigError("window_source", "'elasticsearch' needs elasticsearch_url", source=source)
    if config.mlflow_tracking_uri and not TRACKING_SCHEME.match(config.mlflow_tracking_uri):
        raise ConfigError(
            "mlflow_tracking_uri",
            "expected a URI with a scheme, such as http://host:5000, https://..., "
            "file:///path or databricks (the value is not shown: it may hold a password)",
            source=source,
        )
    if is_mlflow_uri(config.version):
        try:
            parse_model_uri(str(config.version))
        except TrackingError as exc:
            raise ConfigError("version", str(exc), source=source) from None
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        missing = "tls_key_file" if config.tls_cert_file else "tls_cert_file"
        raise ConfigError(missing, "set tls_cert_file and tls_key_file together", source=source)
    if config.spool_max_bytes < 2 * config.spool_segment_bytes:
        raise ConfigError(
            "spool_max_bytes",
            "must be at least twice spool_segment_bytes "
            f"({config.spool_segment_bytes}), got {config.spool_max_bytes}",
            source=source,
        )
    return config
