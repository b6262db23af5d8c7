"""What every target shares: one bounded attempt (timeouts, endless or trickling answers,
refused connections, redirects, TLS), the status-to-outcome table, dry runs, never
raising, and secrets kept out of every detail, repr and log line."""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwatch.alerting.targets import (
    GitHubDispatchTarget,
    GitHubWorkflowTarget,
    GitLabTarget,
    JenkinsTarget,
    WebhookTarget,
    build_target,
)
from mlwatch.alerting.targets.request import MAX_ANSWER_BYTES, exchange, judge
from mlwatch.alerting.trigger import Outcome, Target
from mlwatch.settings.targets import TargetSpec
from tests.alerting.providers import (
    FakeProvider,
    FakeWebhookReceiver,
    Reply,
    Request,
    sample_trigger,
)
from tests.alerting.targets.conftest import (
    ENV,
    GITHUB_TOKEN,
    SECRETS,
    WEBHOOK_SECRET,
    spec_of,
    target_of,
)
from tests.helpers import free_port, make_certs


def items_for(url: str) -> list[dict[str, Any]]:
    """One config entry of each kind, all pointing at ``url``."""
    return [
        {
            "name": "gh",
            "kind": "github_workflow",
            "base_url": url,
            "repo": "acme/models",
            "workflow": "retrain.yml",
            "ref": "main",
            "token_env": "GITHUB_TOKEN",
        },
        {
            "name": "ghd",
            "kind": "github_dispatch",
            "base_url": url,
            "repo": "acme/models",
            "event_type": "retrain",
            "token_env": "GITHUB_TOKEN",
        },
        {
            "name": "gl",
            "kind": "gitlab",
            "base_url": url,
            "project": 7,
            "ref": "main",
            "token_env": "GITLAB_TRIGGER_TOKEN",
        },
        {
            "name": "jk",
            "kind": "jenkins",
            "url": f"{url}/job/retrain",
            "user": "bot",
            "api_token_env": "JENKINS_API_TOKEN",
        },
        {
            "name": "jkp",
            "kind": "jenkins",
            "url": f"{url}/job/retrain",
            "user": "alice",
            "password_env": "JENKINS_PASSWORD",
        },
        {
            "name": "wh",
            "kind": "webhook",
            "url": f"{url}/hook",
            "secret_env": "RETRAIN_WEBHOOK_SECRET",
        },
    ]


KINDS = [item["name"] for item in items_for("http://x")]


class RawServer:
    """A TCP server on 127.0.0.1 whose every connection ``handler(conn)`` serves."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.handler = handler
        self.sent = 0
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hung up
            self.handler(conn)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def read_head(conn: socket.socket) -> None:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk


# --- the attempt's bounds ----------------------------------------------------------


@pytest.mark.parametrize("name", KINDS)
def test_connection_refused_is_retried(name: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    [item] = [i for i in items_for(url) if i["name"] == name]
    started = time.monotonic()
    attempt = target_of(item).send(sample_trigger(), timeout_s=2)
    assert attempt.outcome is Outcome.RETRY and attempt.status is None
    assert "connection refused" in attempt.detail
    assert time.monotonic() - started < 2


def test_a_silent_server_is_retried_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # never accepts, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        attempt = target_of(items_for(url)[0]).send(sample_trigger(), timeout_s=0.5)
        elapsed = time.monotonic() - started
    assert attempt.outcome is Outcome.RETRY and attempt.status is None
    assert "no complete answer within 0.5s" in attempt.detail
    assert 0.4 < elapsed < 1.5


def test_a_trickling_answer_is_cut_at_the_deadline(raw_server: Callable[..., RawServer]) -> None:
    def trickle(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):  # a byte every 20 ms: each read is quick, the whole is not
            conn.sendall(b"x")
            time.sleep(0.02)

    server = raw_server(trickle)
    started = time.monotonic()
    attempt = target_of(items_for(server.url)[0] | {"timeout_s": 0.5}).send(
        sample_trigger(), timeout_s=5
    )
    assert attempt.outcome is Outcome.RETRY and attempt.status is None
    assert time.monotonic() - started < 1.5


def test_the_targets_own_timeout_and_the_callers_the_shorter_wins() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        target = target_of(items_for(url)[0] | {"timeout_s": 0.3})
        started = time.monotonic()
        target.send(sample_trigger(), timeout_s=30)
        assert time.monotonic() - started < 1.0


def endless(status: bytes) -> Callable[[socket.socket], None]:
    def serve(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"4000\r\n" + (b"<p>error " * 2000)[:0x4000] + b"\r\n"  # 16 KiB, for ever
        while True:
            conn.sendall(chunk)

    return serve


def test_an_endless_answer_is_read_only_in_part(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(endless(b"500 Internal Server Error"))
    started = time.monotonic()
    answer = exchange(
        "POST", f"{server.url}/x", headers={}, body=b"{}", deadline=time.monotonic() + 5
    )
    assert time.monotonic() - started < 2
    assert answer.status == 500 and not answer.whole
    assert len(answer.body) == MAX_ANSWER_BYTES
    attempt = target_of(items_for(server.url)[2]).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.RETRY and attempt.status == 500
    assert len(attempt.detail) < 600


def test_a_huge_declared_answer_is_not_waited_for(raw_server: Callable[..., RawServer]) -> None:
    def huge(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 1000000000\r\n\r\n")
        conn.sendall(b'{"message": "' + b"x" * 70000)
        conn.settimeout(5)
        conn.recv(1)  # until the client hangs up

    server = raw_server(huge)
    started = time.monotonic()
    attempt = target_of(items_for(server.url)[0]).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 422
    assert time.monotonic() - started < 2 and len(attempt.detail) < 600


class Redirecting(FakeProvider):
    def route(self, request: Request) -> Reply:
        return Reply(307, headers=[("Location", "https://elsewhere.example/new")])


def test_a_redirect_is_not_followed() -> None:
    with Redirecting() as fake:
        attempt = target_of(items_for(fake.url)[0]).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 307
    assert "https://elsewhere.example/new" in attempt.detail
    assert len(fake.requests) == 1


def test_tls_is_verified(tmp_path: Path) -> None:
    import ssl

    make_certs(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "node.crt", tmp_path / "node.key")
    with FakeWebhookReceiver(secret=WEBHOOK_SECRET, tls=context) as fake:
        item = {
            "name": "wh",
            "kind": "webhook",
            "url": fake.url,
            "secret_env": "RETRAIN_WEBHOOK_SECRET",
        }
        untrusted = target_of(item).send(sample_trigger(), timeout_s=5)
        trusted = target_of(item | {"ca_file": str(tmp_path / "ca.crt")}).send(
            sample_trigger(), timeout_s=5
        )
    assert untrusted.outcome is Outcome.RETRY and "certificate not trusted" in untrusted.detail
    assert trusted.outcome is Outcome.DELIVERED, trusted
    assert len(fake.effects) == 1


# --- outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (201, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (504, Outcome.RETRY),
        (301, Outcome.REJECTED),
        (400, Outcome.REJECTED),
        (401, Outcome.REJECTED),
        (403, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (409, Outcome.REJECTED),
        (410, Outcome.REJECTED),
        (422, Outcome.REJECTED),
    ],
)
def test_status_to_outcome(status: int, outcome: Outcome) -> None:
    assert judge(status, "m", where="POST u").outcome is outcome


def test_retry_after_as_an_http_date() -> None:
    from email.utils import formatdate

    when = formatdate(time.time() + 60, usegmt=True)
    wait = judge(503, "", where="POST u", retry_after=when).retry_after_s
    assert wait is not None and 55 <= wait <= 61


def test_a_dry_run_sends_nothing() -> None:
    with Redirecting() as fake:
        attempt = target_of(items_for(fake.url)[0]).send(sample_trigger(dry_run=True), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status is None
    assert "dry run" in attempt.detail and fake.requests == []


def test_send_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    target = target_of(items_for("http://127.0.0.1:1")[0])

    def broken(*args: Any) -> Any:
        raise RuntimeError(f"bug with {GITHUB_TOKEN}")

    monkeypatch.setattr(target, "body", broken)
    attempt = target.send(sample_trigger(), timeout_s=1)
    assert attempt.outcome is Outcome.REJECTED and "RuntimeError" in attempt.detail
    assert GITHUB_TOKEN not in attempt.detail


def test_build_target_makes_each_kind() -> None:
    classes = [type(target_of(item)) for item in items_for("http://ci.example")]
    assert classes == [
        GitHubWorkflowTarget,
        GitHubDispatchTarget,
        GitLabTarget,
        JenkinsTarget,
        JenkinsTarget,
        WebhookTarget,
    ]
    for item in items_for("http://ci.example"):
        target: Target = target_of(item)
        assert target.name == item["name"] and target.kind == item["kind"]
    with pytest.raises(ValueError, match="unknown target kind"):
        build_target(TargetSpec(name="x", kind="travis"))


# --- secrets -----------------------------------------------------------------------


class Echo(FakeProvider):
    """A misbehaving server that echoes the whole request (headers, body) in its error
    and in a header: a target must mask its secrets out of what it keeps."""

    def route(self, request: Request) -> Reply:
        if request.path.endswith("/crumbIssuer/api/json"):
            return Reply(
                200,
                b'{"crumb": "c", "crumbRequestField": "Jenkins-Crumb"}',
                [("Set-Cookie", "JSESSIONID.x=abc; Path=/")],
            )
        echoed = repr(request.headers) + " " + request.body.decode()
        return Reply(400, echoed.encode(), [("Location", echoed[:200].replace("\n", " "))])


def all_forms(secret: str) -> list[str]:
    forms = [secret]
    if secret.startswith("whsec_"):
        forms.append(secret[6:])
    return forms


def test_secrets_never_appear_in_details_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with Echo() as fake:
        for item in items_for(fake.url):
            spec = spec_of(item)
            target = build_target(spec)
            attempt = target.send(sample_trigger(), timeout_s=5)
            assert attempt.outcome is Outcome.REJECTED and attempt.status == 400, attempt
            if item["kind"] != "webhook":  # a webhook's secret never travels
                assert "***" in attempt.detail  # the echoed secret, masked
            seen += [repr(spec), repr(target), repr(attempt), str(attempt.detail)]
        # the echo really did carry every secret (so the check above could fail)
        echoed = b" ".join(r.body + repr(r.headers).encode() for r in fake.requests)
        basic = base64.b64encode(f"bot:{ENV['JENKINS_API_TOKEN']}".encode())
        assert GITHUB_TOKEN.encode() in echoed and basic in echoed
    text = "\n".join(seen) + caplog.text
    assert caplog.records, "each attempt is logged at DEBUG"
    for secret in SECRETS:
        for form in all_forms(secret):
            assert form not in text
    basic_forms = [
        base64.b64encode(f"bot:{ENV['JENKINS_API_TOKEN']}".encode()).decode(),
        base64.b64encode(f"alice:{ENV['JENKINS_PASSWORD']}".encode()).decode(),
    ]
    for form in basic_forms:
        assert form not in text
