"""Identity on every event: model, version, code version (git, once, off the hot path)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlwatch
from mlwatch.client import identity, runtime
from mlwatch.client.memory import MemoryExporter
from mlwatch.client.site import Site
from mlwatch.settings import Config, load_config

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture
def fresh_git_cache() -> Iterator[None]:
    saved = list(identity._git)
    identity._git.clear()
    yield
    identity._git[:] = saved


@needs_git
def test_git_commit_of_a_repository(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "f").write_text("x")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    assert identity.git_commit(str(tmp_path)) == git("rev-parse", "HEAD")


def test_no_repository_or_no_git_gives_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert identity.git_commit(str(tmp_path)) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary at all
    assert identity.git_commit(str(tmp_path)) is None


def test_code_version_order(fresh_git_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "git_commit", lambda: "f" * 40)
    assert identity.resolve_code_version("from-config") == "from-config"
    assert identity.resolve_code_version(None) == "f" * 40
    identity._git.clear()
    monkeypatch.setattr(identity, "git_commit", lambda: None)
    assert identity.resolve_code_version(None) == mlwatch.__version__


def test_env_code_version_wins() -> None:
    cfg = load_config(env={"MLWATCH_CODE_VERSION": "v9"})
    assert identity.resolve_code_version(cfg.code_version) == "v9"


def test_git_runs_once_per_process_on_the_worker(
    fresh_git_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []

    def fake_git() -> str:
        threads.append(threading.current_thread().name)
        return "a" * 40

    monkeypatch.setattr(identity, "git_commit", fake_git)
    sink = MemoryExporter()
    runtime.start(Config(model="m", flush_interval_ms=60_000), exporter=sink)

    @mlwatch.monitor()
    def predict(x: int) -> int:
        return x

    @mlwatch.monitor("other")
    def predict2(x: int) -> int:
        return x

    for i in range(3):
        predict(i)
        predict2(i)
    assert threads == []  # not on the calling thread
    assert mlwatch.flush(5.0)
    runtime.start(Config(model="m", flush_interval_ms=60_000), exporter=sink)  # a new runtime
    predict(9)
    assert mlwatch.shutdown(5.0)
    assert threads == ["mlwatch-shipper"]
    assert {e["code_version"] for e in sink.records["events"]} == {"a" * 40}


def test_resolve_prefers_monitor_arguments_then_config_then_defaults() -> None:
    cfg = Config(model="cfg-model", version="cfg-v", run_id="cfg-run")
    full = Site(name="predict", model="m", version="2", run_id="r", labels={"k": "v"})
    assert identity.resolve(full, cfg, "c") == identity.Identity("m", "2", "c", "r", {"k": "v"})
    assert identity.resolve(Site(name="predict"), cfg, "c") == identity.Identity(
        "cfg-model", "cfg-v", "c", "cfg-run"
    )
    assert identity.resolve(Site(name="_predict"), Config(), "c") == identity.Identity(
        "predict", "unknown", "c"
    )


def test_resolve_escapes_what_the_wire_refuses_and_never_fails_on_odd_types() -> None:
    odd = Site(name="predict", model="m", version="1\n", run_id=12345)  # type: ignore[arg-type]
    ident = identity.resolve(odd, Config(), "c\x00")
    assert (ident.version, ident.run_id) == ("1\\n", "12345")
    assert identity.resolve_code_version("c\x00") == "c\\x00"
    assert (
        identity.resolve(Site(name="p", version="\x00" * 200), Config(), "c").version
        == "\\x00" * 32
    )


def test_a_site_whose_identity_fails_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> identity.Identity:
        raise TypeError("boom")

    monkeypatch.setattr(runtime, "resolve", broken)
    rt = runtime.Runtime(Config(model="m", sidecar_url="off"))
    assert rt.identity_of(Site(name="_predict", model="bad name")).key == ("predict", "unknown")
    assert rt.identity_of(Site(name="f", model="ok", version="7")).key == ("ok", "7")
    assert identity.fallback_key(Site(name="f", version="\n")) == ("f", "\\n")
