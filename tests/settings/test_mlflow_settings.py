"""MLflow in the config: model URIs as versions and references, checked when it loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwatch.errors import ConfigError
from mlwatch.settings import load_config


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "mlwatch.yaml"
    path.write_text(text)
    return load_config(path, env={})


def test_a_model_uri_as_version_leaves_the_version_to_mlflow(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "mlflow_tracking_uri: http://bob:pw@mlflow:5000\n"
        "models:\n"
        "  - name: churn\n"
        "    version: models:/churn@champion\n"
        "    reference: {mlflow: 'runs:/abc/model', artifact: /data/ref.parquet}\n",
    )
    spec = cfg.models[0]  # type: ignore[attr-defined]
    assert spec.version is None and spec.mlflow == "models:/churn@champion"
    assert spec.monitoring.reference_mlflow == ("runs:/abc/model", "data/ref.parquet")
    assert spec.monitoring.reference is None
    assert cfg.redacted()["mlflow_tracking_uri"] == "http://***@mlflow:5000"  # type: ignore[attr-defined]
    assert "pw" not in repr(cfg)


def test_a_plain_version_stays_a_version(tmp_path: Path) -> None:
    cfg = load(tmp_path, "models:\n  - {name: churn, version: 3}\n")
    assert cfg.models[0].version == "3" and cfg.models[0].mlflow is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "key", "what"),
    [
        ("version: models:/churn/x", "models[0].version", "models:/churn/x"),
        ("version: 'models:/churn@'", "models[0].version", "alias"),
        ("version: runs:/", "models[0].version", "run id"),
        ("version: models:/churn/Production", "models[0].version", "stages"),
        (
            "reference: {mlflow: 'models:/churn/v2', artifact: r.csv}",
            "models[0].reference.mlflow",
            "not an integer",
        ),
        (
            "reference: {mlflow: 'models:/churn/1', artifact: ../r.csv}",
            "models[0].reference.artifact",
            "artifact",
        ),
        (
            "reference: {mlflow: 'models:/churn/1', artifact: 3}",
            "models[0].reference.artifact",
            "artifact",
        ),
        ("reference: {mlflow: 'models:/churn/1'}", "models[0].reference", "mlflow: <model URI>"),
    ],
)
def test_bad_mlflow_uris_name_the_key_and_the_uri(
    tmp_path: Path, body: str, key: str, what: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, f"models:\n  - name: churn\n    {body}\n")
    assert err.value.key == key
    assert what in str(err.value)


def test_a_bad_uri_in_the_version_setting_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(version="models:/churn@", env={})
    assert err.value.key == "version" and "models:/churn@" in str(err.value)


def test_a_tracking_uri_without_a_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(mlflow_tracking_uri="bob:s3cret@mlflow:5000", env={})
    assert err.value.key == "mlflow_tracking_uri" and "s3cret" not in str(err.value)
    assert load_config(mlflow_tracking_uri="https://mlflow:5000", env={}).mlflow_tracking_uri
