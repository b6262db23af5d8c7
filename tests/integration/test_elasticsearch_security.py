"""Credentials and TLS: basic auth, an API key, a private CA; secrets never in the logs.

The node runs with security on and TLS on its HTTP port (a CA and a certificate made
with openssl for the test). The sidecar reads the password and the API key from files
(``MLWATCH_*_FILE``) and logs at debug level; its whole log is then searched for them.
"""

from __future__ import annotations

import base64
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwatch.elastic.documents import stream_name
from tests.helpers import event, make_certs, wait_until
from tests.integration import elastic
from tests.integration.elastic import Cluster
from tests.integration.servers import SidecarProcess, get_json_any
from tests.integration.test_elasticsearch import post

pytestmark = pytest.mark.integration

USER, PASSWORD = "mlwatch_admin", "pw-" + uuid.uuid4().hex


class Secure:
    def __init__(self, cluster: Cluster, ca: Path) -> None:
        self.cluster, self.ca = cluster, ca
        node = cluster.nodes[0]
        self.url = f"https://127.0.0.1:{node.http_port}"

    def call(self, method: str, path: str, body: Any = None, auth: str | None = None) -> Any:
        import json
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca))
        token = auth or "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise elastic.ElasticsearchHTTPError(
                    exc.code, f"{method} {path}: {exc.read()[:1000]!r}"
                ) from None


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    try:
        elastic.distribution()
        elastic.java_home()
    except elastic.Unavailable as exc:
        elastic.skip_or_fail(str(exc))
    base = elastic.ROOT / "nodes" / uuid.uuid4().hex[:8]
    cluster = Cluster(
        base,
        1,
        settings={
            "xpack.security.enabled": "true",
            "xpack.security.http.ssl.enabled": "true",
            "xpack.security.http.ssl.key": "certs/node.key",
            "xpack.security.http.ssl.certificate": "certs/node.crt",
            "xpack.security.http.ssl.certificate_authorities": "certs/ca.crt",
            "xpack.security.enrollment.enabled": "false",
            "xpack.security.authc.api_key.enabled": "true",
        },
    )
    node = cluster.nodes[0]
    make_certs(node.base / "config" / "certs")
    # a file-realm superuser, written the way an operator would (elasticsearch-users)
    subprocess.run(
        [
            str(node.home / "bin" / "elasticsearch-users"),
            "useradd",
            USER,
            "-p",
            PASSWORD,
            "-r",
            "superuser",
        ],
        check=True,
        capture_output=True,
        env={
            "ES_PATH_CONF": str(node.base / "config"),
            "ES_JAVA_HOME": elastic.java_home(),
            "PATH": "/usr/bin:/bin",
        },
    )
    node.start()
    secure = Secure(cluster, node.base / "config" / "certs" / "ca.crt")
    wait_until(
        lambda: secure.call("GET", "/_cluster/health"),
        timeout=180,
        interval=0.5,
        what="the TLS node",
    )
    yield secure
    cluster.stop()


def ship(tmp_path: Path, secure: Secure, **env: str) -> tuple[SidecarProcess, str]:
    ns = uuid.uuid4().hex[:10]
    side = SidecarProcess(
        tmp_path / f"data-{ns}",
        MLWATCH_ELASTICSEARCH_URL=secure.url,
        MLWATCH_ELASTICSEARCH_NAMESPACE=ns,
        MLWATCH_ELASTICSEARCH_CA_FILE=str(secure.ca),
        MLWATCH_LOG_LEVEL="debug",
        **env,
    )
    return side, stream_name("mlwatch.predictions", ns)


def sink_error(side: SidecarProcess, what: str) -> str:
    """The Elasticsearch sink's last error, once /readyz reports it (503)."""
    _, body = wait_until(
        lambda: (r := get_json_any(side.url + "/readyz"))[0] == 503 and r, timeout=30, what=what
    )
    return str(body["sinks"]["elasticsearch"]["last_error"])


def stored(secure: Secure, index: str) -> int:
    secure.call("POST", f"/{index}/_refresh")
    return int(secure.call("GET", f"/{index}/_count")["count"])


def test_basic_auth_and_api_key_over_tls_never_logged(secure: Secure, tmp_path: Path) -> None:
    password_file = tmp_path / "es-password"
    password_file.write_text(PASSWORD + "\n")
    side, index = ship(
        tmp_path,
        secure,
        MLWATCH_ELASTICSEARCH_USERNAME=USER,
        MLWATCH_ELASTICSEARCH_PASSWORD_FILE=str(password_file),
    )
    side.start()
    try:
        assert post(side.port, [event(i) for i in range(25)]) == 202
        wait_until(
            lambda: stored(secure, index) == 25, timeout=60, what="25 documents via basic auth"
        )
    finally:
        side.stop()
    logs = side.log()

    # An API key reaches Elasticsearch in the ApiKey scheme. This distribution cannot
    # mint keys (the .security index needs the analysis-common module it lacks), so an
    # unknown key is sent and must be refused by the node's API-key authenticator.
    api_key = base64.b64encode(f"{uuid.uuid4().hex[:20]}:{uuid.uuid4().hex}".encode()).decode()
    key_file = tmp_path / "es-api-key"
    key_file.write_text(api_key)
    side, index = ship(tmp_path, secure, MLWATCH_ELASTICSEARCH_API_KEY_FILE=str(key_file))
    side.start()
    try:
        assert post(side.port, [event(1)]) == 202
        assert "401" in sink_error(side, "the sink to report the refused API key")
    finally:
        side.stop()
    logs += side.log()

    # a wrong password: the sink reports it, the sidecar keeps accepting, nothing leaks
    wrong = "wrong-" + uuid.uuid4().hex
    side, index = ship(
        tmp_path, secure, MLWATCH_ELASTICSEARCH_USERNAME=USER, MLWATCH_ELASTICSEARCH_PASSWORD=wrong
    )
    side.start()
    try:
        assert post(side.port, [event(1)]) == 202
        assert "401" in sink_error(side, "the sink to report the authentication failure")
    finally:
        side.stop()
    logs += side.log()

    assert "401" in logs and "elasticsearch" in logs  # the logs did say what went wrong
    secrets = [
        PASSWORD,
        api_key,
        api_key[:20],
        wrong,
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        base64.b64encode(f"{USER}:{wrong}".encode()).decode(),
    ]
    for secret in secrets:
        assert secret not in logs
