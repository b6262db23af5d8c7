"""The ``targets`` section: each kind with its defaults, secrets only from the
environment or a file (never inline, never in a message or repr), and errors that name
the key and the file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mlwatch.errors import ConfigError
from mlwatch.settings import load_config
from mlwatch.settings.targets import GITHUB_API_VERSION, TargetSpec, parse_targets

TOKEN = "ghp_NeverShowThisToken0123456789"
WHSEC = "whsec_" + base64.b64encode(b"\x01" * 32).decode()
ENV = {"GH": TOKEN, "GL": "glptt-trigger", "JT": "jenkins-api", "JP": "jenkins-pw", "WH": WHSEC}

GITHUB = {
    "name": "retrain",
    "kind": "github_workflow",
    "repo": "acme/models",
    "workflow": "retrain.yml",
    "ref": "main",
    "token_env": "GH",
}


def parse(*items: dict[str, Any], env: dict[str, str] | None = None) -> tuple[TargetSpec, ...]:
    return parse_targets(list(items), "mlwatch.yaml", env=ENV if env is None else env)


def error(*items: Any, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_targets(list(items), "mlwatch.yaml", env=ENV if env is None else env)
    assert "(in mlwatch.yaml)" in str(info.value)
    for secret in ENV.values():
        assert secret not in str(info.value)
    return info.value


def test_each_kind_with_its_defaults() -> None:
    gh, ghd, gl, jk, wh = parse(
        GITHUB,
        {
            "name": "d",
            "kind": "github_dispatch",
            "repo": "acme/models",
            "event_type": "retrain",
            "token_env": "GH",
        },
        {
            "name": "gl",
            "kind": "gitlab",
            "project": "ml/churn",
            "ref": "main",
            "token_env": "GL",
            "variables": {"A": 1, "B": True},
        },
        {
            "name": "jk",
            "kind": "jenkins",
            "url": "https://ci.example/job/ml/job/retrain/",
            "user": "bot",
            "api_token_env": "JT",
            "parameters": {"X": "y"},
        },
        {
            "name": "wh",
            "kind": "webhook",
            "url": "https://hooks.example/retrain",
            "secret_env": "WH",
            "source": "//mlwatch.prod/sidecar",
            "timeout_s": 3,
        },
    )
    assert (gh.url, gh.api_version, gh.return_run_details, gh.timeout_s) == (
        "https://api.github.com",
        GITHUB_API_VERSION,
        True,
        10.0,
    )
    assert gh.token == TOKEN and gh.repo == "acme/models" and gh.ref == "main"
    assert ghd.event_type == "retrain" and ghd.token == TOKEN
    assert gl.url == "https://gitlab.com" and gl.project == "ml/churn"
    assert gl.extra == (("A", "1"), ("B", "true")) and gl.token == "glptt-trigger"
    assert jk.url == "https://ci.example/job/ml/job/retrain" and jk.token == "jenkins-api"
    assert jk.password is None and jk.extra == (("X", "y"),)
    assert wh.secret == WHSEC and wh.source == "//mlwatch.prod/sidecar" and wh.timeout_s == 3.0


def test_enterprise_server_and_self_managed_base_urls() -> None:
    ghes, gl = parse(
        {**GITHUB, "base_url": "https://github.acme.example/api/v3/"},
        {
            "name": "gl",
            "kind": "gitlab",
            "base_url": "https://gitlab.acme.example",
            "project": 7,
            "ref": "main",
            "token_env": "GL",
        },
    )
    assert ghes.url == "https://github.acme.example/api/v3"
    assert ghes.return_run_details is False  # not known to every Enterprise Server
    assert gl.url == "https://gitlab.acme.example" and gl.project == "7"


def test_secrets_stay_out_of_reprs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [spec] = parse(GITHUB)
    assert TOKEN not in repr(spec) and TOKEN not in str(spec)
    path = tmp_path / "mlwatch.json"
    path.write_text(json.dumps({"targets": [GITHUB]}))
    config = load_config(path, env={"GH": TOKEN})  # the loader's environment
    assert config.targets[0].token == TOKEN
    assert TOKEN not in repr(config) and TOKEN not in repr(config.targets)


def test_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    item = {k: v for k, v in GITHUB.items() if k != "token_env"}
    [spec] = parse({**item, "token_file": str(secret)})
    assert spec.token == TOKEN


JENKINS = {"name": "j", "kind": "jenkins", "url": "https://ci.example/job/x", "user": "u"}
WEBHOOK = {"name": "w", "kind": "webhook", "url": "https://hooks.example/"}
WITHOUT_SECRET = {
    "token": {k: v for k, v in GITHUB.items() if k != "token_env"},
    "api_token": JENKINS,
    "password": JENKINS,
    "secret": WEBHOOK,
}


@pytest.mark.parametrize("key", sorted(WITHOUT_SECRET))
def test_an_inline_secret_is_refused_naming_both_ways(key: str) -> None:
    exc = error({**WITHOUT_SECRET[key], key: "inline-value-9f8e7d"})
    assert exc.key == f"targets[0].{key}"
    assert f"{key}_env" in str(exc) and f"{key}_file" in str(exc)
    assert "inline-value-9f8e7d" not in str(exc)


def test_missing_unset_or_unreadable_secrets(tmp_path: Path) -> None:
    item = {k: v for k, v in GITHUB.items() if k != "token_env"}
    exc = error(item)
    assert exc.key == "targets[0]" and "token_env" in str(exc) and "token_file" in str(exc)
    exc = error({**item, "token_env": "NOT_SET"})
    assert exc.key == "targets[0].token_env" and "NOT_SET is not set" in str(exc)
    exc = error({**item, "token_env": "bad name"})
    assert exc.key == "targets[0].token_env"
    exc = error({**item, "token_file": str(tmp_path / "missing")})
    assert exc.key == "targets[0].token_file" and "cannot read the secret file" in str(exc)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty" in str(error({**item, "token_file": str(empty)}))
    exc = error({**item, "token_env": "GH", "token_file": str(empty)})
    assert "not both" in str(exc)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"rep": "acme/models"}, "targets[0].rep", "did you mean 'repo'"),
        ({"workflw": "x.yml"}, "targets[0].workflw", "did you mean 'workflow'"),
        ({"event_type": "x"}, "targets[0].event_type", "unknown key for a github_workflow target"),
        ({"kind": "github"}, "targets[0].kind", "must be one of"),
        ({"kind": "gitlb"}, "targets[0].kind", "did you mean 'gitlab'"),
        ({"name": "bad name"}, "targets[0].name", "expected a name"),
        ({"repo": "acme"}, "targets[0].repo", "expected 'owner/name'"),
        ({"repo": None}, "targets[0].repo", "is required"),
        ({"workflow": "retrain"}, "targets[0].workflow", "workflow file name"),
        ({"ref": ""}, "targets[0].ref", "non-empty string"),
        ({"ref": None}, "targets[0].ref", "is required"),
        ({"api_version": "latest"}, "targets[0].api_version", "a date"),
        ({"base_url": "ftp://github.example"}, "targets[0].base_url", "http(s) URL"),
        (
            {"base_url": "https://user:pw@github.example"},
            "targets[0].base_url",
            "credentials do not go in the URL",
        ),
        ({"base_url": "https://github.example/?x=1"}, "targets[0].base_url", "without a query"),
        ({"timeout_s": 0}, "targets[0].timeout_s", "above 0"),
        ({"timeout_s": "5"}, "targets[0].timeout_s", "above 0"),
        ({"ca_file": "/nonexistent/ca.pem"}, "targets[0].ca_file", "CA bundle"),
        ({"return_run_details": "yes"}, "targets[0].return_run_details", "true or false"),
        ({"inputs": {"model": "x"}}, "targets[0].inputs.model", "one of the inputs mlwatch sends"),
        ({"inputs": {"a b": "x"}}, "targets[0].inputs.a b", "not a valid name"),
        ({"inputs": {"env": ["x"]}}, "targets[0].inputs.env", "a string or number"),
        ({"inputs": {f"i{n}": "x" for n in range(18)}}, "targets[0].inputs", "at most 25 inputs"),
    ],
)
def test_github_errors_name_the_key(change: dict[str, Any], key: str, words: str) -> None:
    item = {k: v for k, v in {**GITHUB, **change}.items() if v is not None}
    exc = error(item)
    assert exc.key == key and words in str(exc), str(exc)


def test_other_kinds_errors_name_the_key() -> None:
    dispatch = {"name": "d", "kind": "github_dispatch", "repo": "a/b", "token_env": "GH"}
    assert error({**dispatch, "event_type": "e" * 101}).key == "targets[0].event_type"
    gitlab = {"name": "g", "kind": "gitlab", "ref": "main", "token_env": "GL"}
    assert error({**gitlab, "project": "no spaces allowed"}).key == "targets[0].project"
    assert (
        error({**gitlab, "project": 1, "variables": {"MLWATCH_MODEL": "x"}}).key
        == "targets[0].variables.MLWATCH_MODEL"
    )
    assert error({**gitlab, "project": 1, "variables": ["A"]}).key == "targets[0].variables"
    jenkins = {"name": "j", "kind": "jenkins", "user": "u", "api_token_env": "JT"}
    assert "job's URL" in str(error({**jenkins, "url": "https://ci.example/"}))
    assert error({**jenkins, "url": "https://ci/job/x", "password_env": "JP"}).key == "targets[0]"
    assert error({**jenkins, "url": "https://ci/job/x", "user": None}).key == "targets[0].user"
    assert (
        error({"name": "j", "kind": "jenkins", "url": "https://ci/job/x", "user": "u"}).key
        == "targets[0]"
    )
    hook = {"name": "w", "kind": "webhook", "url": "https://h.example/", "secret_env": "S"}
    assert "does not start with whsec_" in str(error(hook, env={"S": "plain-secret-value"}))
    assert "not whsec_ followed by base64" in str(error(hook, env={"S": "whsec_***not-base64***"}))
    assert "holds 8 bytes" in str(
        error(hook, env={"S": "whsec_" + base64.b64encode(b"k" * 8).decode()})
    )
    assert "no spaces" in str(error({**hook, "source": "my sidecar"}, env={"S": WHSEC}))


def test_names_are_unique_and_the_list_is_a_list() -> None:
    exc = error(GITHUB, {**GITHUB})
    assert exc.key == "targets[1].name" and "listed twice" in str(exc)
    assert error("not a mapping").key == "targets[0]"
    with pytest.raises(ConfigError) as info:
        parse_targets({"name": "x"}, "mlwatch.yaml", env={})
    assert info.value.key == "targets"


def test_errors_from_a_config_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mlwatch.json"
    path.write_text(json.dumps({"targets": [{**GITHUB, "token_env": "SURELY_NOT_SET_123"}]}))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == "targets[0].token_env" and str(path) in str(info.value)
