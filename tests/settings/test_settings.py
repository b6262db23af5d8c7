"""Config loading: precedence, types, and errors that name the key and the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlwatch.errors import ConfigError
from mlwatch.settings import load_config, settings_table
from tests.helpers import REPO

CONFIGURATION_DOC = REPO / "docs" / "configuration.md"


def write(tmp_path: Path, text: str, name: str = "mlwatch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_safe() -> None:
    cfg = load_config(env={})
    assert cfg.host == "127.0.0.1"
    assert cfg.token is None and cfg.sidecar_url is None
    assert cfg.spool_fsync == "interval"


def test_precedence_file_env_keywords(tmp_path: Path) -> None:
    path = write(tmp_path, "sample_rate: 0.2\nqueue_size: 50\nport: 9000\n")
    cfg = load_config(path, env={"MLWATCH_QUEUE_SIZE": "70"}, port=9100)
    assert (cfg.sample_rate, cfg.queue_size, cfg.port) == (0.2, 70, 9100)
    cfg = load_config(env={"MLWATCH_CONFIG": str(path)})
    assert cfg.source == str(path) and cfg.port == 9000


def test_models_section(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - name: churn
    version: 3
    task: classification
    features:
      - {name: age, type: numeric}
      - {name: email, type: categorical, sensitive: true}
      - {name: ssn, type: categorical, sensitive: drop}
      - plan
""",
    )
    spec = load_config(path, env={}).model_spec("churn")
    assert spec is not None and spec.version == "3"
    assert [(f.name, f.type, f.sensitive) for f in spec.features] == [
        ("age", "numeric", None),
        ("email", "categorical", "hash"),
        ("ssn", "categorical", "drop"),
        ("plan", "numeric", None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queue_size: lots\n", "queue_size: expected an integer, got 'lots'"),
        ("sample_rate: 1.5\n", "sample_rate: must be at most 1.0, got 1.5"),
        ("spool_fsync: never\n", "spool_fsync: must be one of always, interval, got 'never'"),
        ("colour: blue\n", "colour: unknown key"),
        ("enabled: maybe\n", "enabled: expected true or false"),
        ("models:\n  - name: m\n    task: clustering\n", "models[0].task: must be one of"),
        (
            "models:\n  - name: m\n    features:\n      - {name: a, type: text}\n",
            "models[0].features[0].type: must be numeric or categorical",
        ),
        (
            "models:\n  - name: m\n    features:\n      - {name: a, sensitive: maybe}\n",
            "models[0].features[0].sensitive",
        ),
        ("models:\n  - name: m\n  - name: m\n", "models[1].name: model 'm' is listed twice"),
        ("models:\n  - {name: m, owner: x}\n", "models[0].owner: unknown key"),
        ("- a\n- b\n", "config: the top level must be a mapping"),
        ("port: [1\n", "config: invalid YAML at line"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"port: must be at most 65535.*MLWATCH_PORT"):
        load_config(env={"MLWATCH_PORT": "70000"})
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(env={}, sample=1)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", env={})


def test_json_config_needs_no_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, '{"batch_size": 7}', "mlwatch.json")
    assert load_config(path, env={}).batch_size == 7


def test_secrets_are_masked() -> None:
    cfg = load_config(env={"MLWATCH_TOKEN": "abc", "MLWATCH_HASH_KEY": "k"})
    assert cfg.redacted()["token"] == "***" and cfg.redacted()["hash_key"] == "***"
    assert "abc" not in repr(cfg.redacted())


def test_secrets_are_unprintable(caplog: pytest.LogCaptureFixture) -> None:
    """repr, str, formatting and logging of a Config never show a secret or URL user-info."""
    import logging

    import mlwatch

    secrets = {
        "token": "tok-123456",
        "hash_key": "hk-123456",
        "forward_shared_key": "fsk-123456",
        "elasticsearch_password": "espw-123456",
        "elasticsearch_api_key": "esak-123456",
    }
    cfg = mlwatch.configure(sidecar_url="http://user:urlpw-123456@127.0.0.1:1", **secrets)
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("t").info("config %s %r", cfg, cfg)
        shown = [repr(cfg), str(cfg), f"{cfg}", "{}".format(cfg), caplog.text, repr([cfg])]  # noqa: UP032
        for text in shown:
            for secret in [*secrets.values(), "urlpw-123456"]:
                assert secret not in text
        assert "token='***'" in repr(cfg) and "http://***@127.0.0.1:1" in repr(cfg)
        assert cfg.token == "tok-123456"  # the value itself is intact
    finally:
        mlwatch.configure(sidecar_url="off")


def test_the_configuration_doc_settings_table_matches_the_code() -> None:
    text = CONFIGURATION_DOC.read_text()
    start = text.index("<!-- settings:start -->") + len("<!-- settings:start -->\n")
    end = text.index("<!-- settings:end -->")
    assert text[start:end] == settings_table(), "regenerate: python -m mlwatch.settings"


def test_sidecar_url_off_in_yaml(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "sidecar_url: off\n"), env={}).sidecar_url == "off"


def test_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "api-key"
    secret.write_text("c2VjcmV0\n")
    cfg = load_config(env={"MLWATCH_ELASTICSEARCH_API_KEY_FILE": str(secret)})
    assert cfg.elasticsearch_api_key == "c2VjcmV0"
    conf = tmp_path / "mlwatch.json"
    conf.write_text(json.dumps({"elasticsearch_password_file": str(secret)}))
    assert load_config(conf, env={}).elasticsearch_password == "c2VjcmV0"
    # the variable itself wins over its _FILE form
    assert load_config(env={"MLWATCH_TOKEN": "t", "MLWATCH_TOKEN_FILE": str(secret)}).token == "t"
    with pytest.raises(ConfigError, match="MLWATCH_TOKEN_FILE"):
        load_config(env={"MLWATCH_TOKEN_FILE": str(tmp_path / "missing")})
    conf.write_text('{"model_file": "x"}')  # only secrets have a _file form
    with pytest.raises(ConfigError, match="model_file: unknown key"):
        load_config(conf, env={})


def test_urls_are_logged_without_credentials() -> None:
    cfg = load_config(
        env={
            "MLWATCH_ELASTICSEARCH_URL": "https://elastic:s3cret@es1:9200,https://es2:9200",
            "MLWATCH_SIDECAR_URL": "http://user:pw@127.0.0.1:8765",
        }
    )
    shown = str(cfg.redacted())
    assert "s3cret" not in shown and "pw@" not in shown
    assert "https://***@es1:9200,https://es2:9200" in shown


def test_namespace_follows_elastic_naming() -> None:
    assert (
        load_config(env={"MLWATCH_ELASTICSEARCH_NAMESPACE": "prod_eu.1"}).elasticsearch_namespace
        == "prod_eu.1"
    )
    for bad in ("Prod", "prod-eu", "", "a/b"):
        with pytest.raises(ConfigError, match="elasticsearch_namespace"):
            load_config(env={}, elasticsearch_namespace=bad or " ")


def test_environment_defaults_to_default_and_names_the_namespace() -> None:
    cfg = load_config(env={})
    assert (cfg.environment, cfg.elasticsearch_namespace) == ("default", None)
    assert cfg.data_stream_namespace == "default"  # the streams data had before
    qa = load_config(env={"MLWATCH_ENVIRONMENT": "qa"})
    assert (qa.environment, qa.data_stream_namespace) == ("qa", "qa")
    pinned = load_config(env={"MLWATCH_ENVIRONMENT": "qa", "MLWATCH_ELASTICSEARCH_NAMESPACE": "x"})
    assert pinned.data_stream_namespace == "x"  # an explicit namespace still wins


@pytest.mark.parametrize("bad", ["Prod", "prod-eu", "prod eu", "_qa", "a" * 65, "qa:1", "qa.1"])
def test_a_bad_environment_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"MLWATCH_ENVIRONMENT": bad})
    message = str(caught.value)
    assert message.startswith("environment: must be lowercase letters, digits and '_'")
    assert "MLWATCH_ENVIRONMENT" in message and repr(bad) in message


def test_monitoring_section(tmp_path: Path) -> None:
    conf = tmp_path / "m.yaml"
    conf.write_text(
        "models:\n"
        "  - name: credit\n    task: classification\n    classes: ['no', 'yes']\n"
        "    score_field: proba\n    reference: ref.parquet\n    schedule: 30s\n"
        "    window: 1h\n    settle: 2m\n    drift: {alpha: 0.01, correction: bh, min_effect: 0.1}\n"
        "    kpi: {min_samples: 50}\n"
        "  - name: other\n    reference: {since: '2026-01-01T00:00:00Z', until: "
        "'2026-01-02T00:00:00Z'}\n    schedule: {cron: '*/5 * * * *'}\n    sliding: true\n"
        "  - name: plain\n"
    )
    credit, other, plain = load_config(conf, env={}).models
    assert credit.classes == ("no", "yes") and credit.score_field == "proba"
    mon = credit.monitoring
    assert mon is not None and mon.reference == "ref.parquet" and mon.every_s == 30
    assert (mon.window_s, mon.alpha, mon.correction, mon.min_effect, mon.kpi_min_samples) == (
        3600,
        0.01,
        "bh",
        0.1,
        50,
    )
    assert mon.settle_s == 120 and other.monitoring is not None
    assert other.monitoring.settle_s == 60  # the default
    assert other.monitoring is not None and other.monitoring.cron == "*/5 * * * *"
    assert other.monitoring.every_s is None and other.monitoring.sliding
    assert other.monitoring.reference_window == (
        "2026-01-01T00:00:00.000000Z",
        "2026-01-02T00:00:00.000000Z",
    )
    assert plain.monitoring is None


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("schedule: soon", "models[0].schedule: expected a duration"),
        (
            "reference: {since: '2026-01-01T00:00', until: '2026-01-02T00:00:00Z'}",
            "models[0].reference.since: expected an RFC 3339 time",
        ),
        ("schedule: {cron: '* *'}", "models[0].schedule.cron: expected five crontab fields"),
        ("drift: {alpha: 2}", "models[0].drift.alpha: expected a number"),
        ("drift: {correction: holm}", "models[0].drift.correction: must be bonferroni or bh"),
        ("drift: {thresh: 1}", "models[0].drift.thresh: unknown key"),
        ("kpi: {min_samples: 0}", "models[0].kpi.min_samples: expected a positive integer"),
        ("reference: 3", "models[0].reference: a monitored model needs a reference"),
        (
            "reference: {since: yesterday, until: now}",
            "models[0].reference.since: expected an RFC 3339 time",
        ),
        ("classes: [a]", "models[0].classes: expected a list of at least two"),
    ],
)
def test_monitoring_errors_name_the_key(tmp_path: Path, snippet: str, message: str) -> None:
    conf = tmp_path / "m.yaml"
    ref = "" if snippet.startswith("reference") else "    reference: r.csv\n"
    conf.write_text(f"models:\n  - name: m\n{ref}    {snippet}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(conf, env={})


def test_monitoring_needs_a_reference_and_reads_yaml_times(tmp_path: Path) -> None:
    conf = tmp_path / "m.yaml"
    conf.write_text("models:\n  - name: m\n    schedule: 5m\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.reference: a monitored model needs"):
        load_config(conf, env={})
    conf.write_text(
        "models:\n  - name: m\n    reference: {since: 2026-11-01T00:00:00Z, "
        "until: 2026-11-02T12:30:00+01:00}\n"
    )
    [spec] = load_config(conf, env={}).models
    assert spec.monitoring is not None
    assert spec.monitoring.reference_window == (
        "2026-11-01T00:00:00.000000Z",
        "2026-11-02T11:30:00.000000Z",
    )


@pytest.mark.parametrize(
    ("models", "first"),
    [
        (
            "  - name: a\n  - name: a\n    task: ranking\n",
            "models[1].name: model 'a' is listed twice",
        ),
        (
            "  - name: a\n    features: [{name: x, type: text}]\n    prediction_field: 3\n",
            "models[0].features[0].type",
        ),
        ("  - name: a\n    reference: 3\n    kpi: {bad: 1}\n", "models[0].reference"),
    ],
)
def test_the_first_problem_of_a_model_spec_is_the_one_named(
    tmp_path: Path, models: str, first: str
) -> None:
    """Errors name the first problem in a fixed order: name, duplicates, task, features,
    fields, classes, then monitoring (reference, timing, sections, values)."""
    path = tmp_path / "m.yaml"
    path.write_text("models:\n" + models)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(first)


def test_an_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"sampl_rate: unknown setting; did you mean 'sample_rate'\?"
    ):
        load_config(env={}, sampl_rate=0.5)
    cfg = tmp_path / "m.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match=r"prot: unknown key; did you mean 'port'\?"):
        load_config(cfg, env={})
    cfg.write_text("models:\n  - name: m\n    feautres: [x]\n")
    with pytest.raises(
        ConfigError, match=r"models\[0\]\.feautres: unknown key; did you mean 'features'\?"
    ):
        load_config(cfg, env={})
    cfg.write_text("nothing_like_it: 1\n")
    with pytest.raises(ConfigError, match=r"nothing_like_it: unknown key \(in "):
        load_config(cfg, env={})


def test_a_misspelled_variable_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        load_config(env={"MLWATCH_PORTT": "1", "MLWATCH_UNRELATED_THING": "x"})
    assert (
        "MLWATCH_PORTT is not a setting and is ignored; did you mean 'MLWATCH_PORT'?" in caplog.text
    )
    assert "UNRELATED" not in caplog.text  # not close to a setting: none of ours


def test_value_buckets_of_a_regression_model(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text("models:\n  - {name: price, task: regression, value_buckets: [25, 50, 100.5]}\n")
    assert load_config(cfg, env={}).models[0].value_buckets == (25.0, 50.0, 100.5)
    for bad in ("[50, 25]", "[]", "[1, x]", "7", "[1, .nan, 2]", "[1, .inf]"):
        cfg.write_text(f"models:\n  - {{name: price, value_buckets: {bad}}}\n")
        with pytest.raises(
            ConfigError, match=r"models\[0\]\.value_buckets: expected 1 to 50 increasing"
        ):
            load_config(cfg, env={})
