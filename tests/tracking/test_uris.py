"""Model URIs parsed without MLflow: each kind, each malformed form named."""

from __future__ import annotations

import pytest

from mlwatch.errors import TrackingError
from mlwatch.tracking.uris import (
    ModelURI,
    is_mlflow_uri,
    mask,
    parse_model_uri,
    provisional_version,
)


@pytest.mark.parametrize(
    ("text", "expected", "provisional"),
    [
        ("models:/churn/3", ModelURI("models:/churn/3", "version", name="churn", version="3"), "3"),
        ("models:/churn/007", ModelURI("models:/churn/007", "version", "churn", "7"), "7"),
        (
            "models:/churn@champion",
            ModelURI("models:/churn@champion", "alias", name="churn", alias="champion"),
            "@champion",
        ),
        (
            "runs:/abc123/model",
            ModelURI("runs:/abc123/model", "run", run_id="abc123", path="model"),
            "abc123",
        ),
        (
            "runs:/abc123/model/sub/",
            ModelURI("runs:/abc123/model/sub/", "run", run_id="abc123", path="model/sub"),
            "abc123",
        ),
        ("runs:/abc123", ModelURI("runs:/abc123", "run", run_id="abc123"), "abc123"),
    ],
)
def test_parse(text: str, expected: ModelURI, provisional: str) -> None:
    parsed = parse_model_uri(text)
    assert parsed == expected
    assert provisional_version(parsed) == provisional
    assert is_mlflow_uri(text)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("models:/", "the registered model name is empty"),
        ("models:/churn", "no version after the name"),
        ("models:/churn/", "no version after the name"),
        ("models:/x/abc", "the version 'abc' is not an integer"),
        ("models:/x/Production", "stages"),
        ("models:/x/1/extra", "the version '1/extra' is not an integer"),
        ("models:/x/-1", "not an integer"),
        ("models:/@champion", "the registered model name is empty"),
        ("models:/churn@", "the alias '' is empty"),
        ("models:/churn@a/b", "the alias 'a/b' is empty or has a path"),
        ("foo:/x", "not a models:/ or runs:/ URI"),
        ("churn", "not a models:/ or runs:/ URI"),
        ("runs:/", "the run id is empty"),
        ("runs://model", "the run id is empty"),
        ("models:/churn /3", "whitespace"),
        ("", "empty"),
    ],
)
def test_malformed(text: str, what: str) -> None:
    with pytest.raises(TrackingError) as info:
        parse_model_uri(text)
    message = str(info.value)
    assert message.startswith(f"{text or '(empty)'}: ")
    assert what in message
    assert "expected models:/<name>/<version>, models:/<name>@<alias> or runs:/" in message


@pytest.mark.parametrize("value", ["1.2.0", "", None, 3, b"models:/x/1", "Models:/x/1", "run:/x"])
def test_not_mlflow(value: object) -> None:
    assert not is_mlflow_uri(value)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://u:p@host:5000/x", "http://***@host:5000/x"),
        (
            "failed: https://token@h/api and http://a:b@c",
            "failed: https://***@h/api and http://***@c",
        ),
        ("http://host:5000/x user@example.com", "http://host:5000/x user@example.com"),
        ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert mask(text) == masked
