"""A monitored model's reference profile: computed once, kept in the store, renewed when
its source changes.

The source is a CSV or Parquet file (read by :mod:`mlwatch.store.tables`, only the
model's listed features, ``sensitive: hash`` features hashed as served events are), a
window of served traffic, or a file among the artifacts of the run behind an MLflow model
URI (:mod:`.mlflow_reference`: downloaded once into ``data_dir/mlflow-artifacts``, then
read like a file). The profile is stored with a fingerprint of the source (file size and
time, window, the MLflow run and the artifact's content, feature list); a changed source
makes a new reference (a moved alias whose run has other data too), a file that
disappeared or an MLflow that does not answer leaves the stored one in use with a
warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from mlwatch.errors import InputError, JobError, ValidationError
from mlwatch.scheduler.mlflow_reference import MlflowArtifacts
from mlwatch.settings import Config, ModelSpec
from mlwatch.store import EmbeddedStore
from mlwatch.store.schema import ANY_VERSION
from mlwatch.times import parse_ts

log = logging.getLogger("mlwatch.jobs")


def reference_tag(spec: ModelSpec, artifact: str | None = None) -> str:
    """A fingerprint of what a reference is built from: a changed file (size, time), window,
    MLflow artifact (``artifact``: its run, path and content) or feature list makes a new
    reference."""
    mon = spec.monitoring
    source: dict[str, Any] = {"features": [(f.name, f.type, f.sensitive) for f in spec.features]}
    if artifact is not None:
        source["mlflow"] = artifact
    elif mon is not None and mon.reference:
        try:
            st = Path(mon.reference).stat()
            source["file"] = [str(Path(mon.reference).resolve()), st.st_size, st.st_mtime_ns]
        except OSError:
            source["file"] = [mon.reference]
    elif mon is not None and mon.reference_window is not None:
        # the window as times, not text: a config that writes the same instant another way
        # (2026-01-01T00:00:00Z, or .000000Z) keeps its reference
        source["window"] = [_ts_us(t, f"{spec.name}: reference") for t in mon.reference_window]
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]


def _ts_us(text: str, what: str) -> int:
    try:
        return parse_ts(text, line=None)[1]
    except ValidationError as exc:
        raise JobError(f"{what}: expected an RFC 3339 time, got {text!r}") from exc


def _missing(value: Any) -> bool:
    """None, or a float NaN (how pandas and Arrow give a missing value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class References:
    """The reference profiles of one store, cached by source fingerprint."""

    def __init__(self, config: Config, store: EmbeddedStore) -> None:
        self.config = config
        self.store = store
        self.mlflow = MlflowArtifacts(config, Path(store.path).parent / "mlflow-artifacts")
        self._cache: dict[tuple[str, str, str], Any] = {}

    def get(self, spec: ModelSpec) -> Any:
        """The model's reference profile: from the store while its source is unchanged,
        else computed and stored."""

        version = spec.version or ANY_VERSION
        mon = spec.monitoring
        ref_file: str | None = mon.reference if mon else None
        if mon is not None and mon.reference_mlflow:
            fetched = self.mlflow.get(spec, patient=self._has_profile(spec.name, version))
            if fetched is None:  # MLflow did not answer (or not tried again yet)
                return self._fallback(spec, version)
            ref_file, tag = str(fetched[0]), reference_tag(spec, fetched[1])
        else:
            tag = reference_tag(spec)
        key = (spec.name, version, tag)
        if key in self._cache:
            return self._cache[key]
        stored_tag = self.store.profile_tag(spec.name, version, "reference")
        file_gone = bool(ref_file and not Path(ref_file).exists())
        if stored_tag is not None and (stored_tag == tag or file_gone):
            if stored_tag != tag:
                log.warning(
                    "%s: reference file %s is gone; using the stored reference profile",
                    spec.name,
                    ref_file,
                )
            profile = self._stored(spec, version)
        else:
            try:
                profile = self._compute(spec, version, tag, ref_file)
            except JobError as exc:
                if stored_tag is None:
                    raise
                # a source that changed but cannot be read now (its window's events were
                # purged): the stored reference still serves, said once per run
                log.warning("%s: %s; using the stored reference profile", spec.name, exc)
                profile = self._stored(spec, version)
        self._cache = {k: v for k, v in self._cache.items() if k[:2] != key[:2]}
        self._cache[key] = profile
        return profile

    def _has_profile(self, model: str, version: str) -> bool:
        """Whether a profile is in use or stored for ``model``'s ``version``."""
        return any(k[:2] == (model, version) for k in self._cache) or (
            self.store.profile_tag(model, version, "reference") is not None
        )

    def _fallback(self, spec: ModelSpec, version: str) -> Any:
        """The profile in use, or the stored one, while MLflow does not give the reference
        (:meth:`MlflowArtifacts.get` logged why); a JobError naming the setting and the
        URI when there is none."""
        for (model, cached_version, _), profile in self._cache.items():
            if (model, cached_version) == (spec.name, version):
                return profile
        if self.store.profile_tag(spec.name, version, "reference") is None:
            raise self.mlflow.error(spec)
        profile = self._stored(spec, version)
        self._cache[(spec.name, version, "stored")] = profile
        return profile

    def _stored(self, spec: ModelSpec, version: str) -> Any:
        from mlwatch.stats.profile import DatasetProfile

        return DatasetProfile.from_json(self.store.profiles(spec.name, version, "reference")[-1][2])

    def _compute(self, spec: ModelSpec, version: str, tag: str, ref_file: str | None) -> Any:
        from mlwatch.stats.profile import DatasetProfile

        types = {f.name: f.type for f in spec.features if f.sensitive != "drop"} or None
        data, start, end = self._data(spec, ref_file, list(types) if types else None)
        if types:
            data = {name: data[name] for name in types if name in data}
            if missing := [name for name in types if name not in data]:
                noun = "column" if len(missing) == 1 else "columns"
                raise JobError(f"{spec.name}: the reference has no {noun} {', '.join(missing)}")
        if ref_file is not None:  # a file gets the redaction served events got
            data = self._redacted(spec, data)
        profile = DatasetProfile.from_reference(data, types)
        self.store.put_profile(
            spec.name, version, "reference", start, end, profile.to_json(), tag=tag
        )
        log.info(
            "reference profile of %s: %d rows, %d features",
            spec.name,
            profile.rows,
            len(profile.types),
        )
        return profile

    def _redacted(self, spec: ModelSpec, data: Any) -> Any:
        """A file reference gets the redaction served events get, so a hashed feature is
        compared hash to hash (the store's events are redacted already)."""
        hashed = [f.name for f in spec.features if f.sensitive == "hash"]
        if not hashed:
            return data
        from mlwatch.redact import Redactor, load_or_create_key

        redactor = Redactor(
            [spec], key=load_or_create_key(self.config.hash_key, self.config.data_dir)
        )
        columns = dict(data)
        for name in hashed:
            columns[name] = [
                None if _missing(v) else redactor.hash_value(v) for v in list(columns[name])
            ]
        return columns

    def _data(
        self, spec: ModelSpec, ref_file: str | None, names: list[str] | None
    ) -> tuple[Any, int, int]:
        """The reference's columns and the window they cover (0, 0 for a file)."""
        from mlwatch.store.tables import read_columns

        mon = spec.monitoring
        assert mon is not None
        if ref_file:
            try:
                return read_columns(ref_file, columns=names, progress=False), 0, 0
            except InputError as exc:
                raise JobError(f"{spec.name}: reference {exc}") from exc
        if mon.reference_window:
            since = _ts_us(mon.reference_window[0], f"{spec.name}: reference.since")
            until = _ts_us(mon.reference_window[1], f"{spec.name}: reference.until")
            names = names or self._feature_names(spec.name, since, until)
            cols = self.store.feature_columns(
                spec.name, names, since_us=since, until_us=until, version=spec.version
            )
            if not names or not any(v is not None for col in cols.values() for v in col):
                raise JobError(f"{spec.name}: the reference window holds no features")
            return cols, since, until
        raise JobError(f"{spec.name}: no reference (set reference: <file> or {{since, until}})")

    def _feature_names(self, model: str, since: int, until: int) -> list[str]:
        sample = self.store.events(model, since_us=since, until_us=until, limit=200)
        return sorted({k for e in sample for k in (e.get("features") or {})})
