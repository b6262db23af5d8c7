"""A real Kubernetes API server for the manifest tests, and the offline checks beside it.

``.ci/k8s-tools.sh`` builds kube-apiserver, kubectl and helm from the Go module proxy once
per version into ``~/.cache/mlwatch/k8s-<versions>/bin`` and copies the Prometheus
Operator's ServiceMonitor and PodMonitor CRDs next to it (``../crds``). etcd is Debian's
``etcd-server``. No controller manager, scheduler or kubelet runs: the API server is there
to validate (``kubectl apply --server-side --dry-run=server`` reports every schema error of
an object at once, semantic ones such as a selector that does not match the template's
labels or a bad quantity, and custom resources once their CRDs are applied).

:class:`Tools` holds the checks that need no server (``kubernetes-validate --strict``, the
CRD schema check, ``kubectl kustomize``, ``helm template``/``helm lint``); :class:`Cluster`
adds etcd, the API server and the server-side dry run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import yaml

from tests.helpers import IN_CI, REPO, free_port, wait_until

TOOLS_SCRIPT = REPO / ".ci" / "k8s-tools.sh"
# the schema set kubernetes-validate checks against, and what helm renders for
KUBE_VERSION = "1.34.0"
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
}
TOKEN = "mlwatch-test-token"


class Unavailable(Exception):
    """A tool is missing or could not be built: skip locally, fail in CI."""


class ToolError(RuntimeError):
    """A tool ran and failed; the message holds its output."""


def skip_or_fail(reason: str) -> NoReturn:
    import pytest

    if IN_CI:
        pytest.fail(f"Kubernetes tools unavailable in CI: {reason}")
    pytest.skip(f"Kubernetes tools unavailable: {reason}")


def tools_dir(timeout: float = 3600.0) -> Path:
    """The bin directory of ``.ci/k8s-tools.sh`` (builds the tools the first time: minutes)."""
    try:
        out = subprocess.run(
            ["bash", str(TOOLS_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{TOOLS_SCRIPT.name} did not finish in {timeout}s") from exc
    if out.returncode != 0:
        hint = "" if shutil.which("go") else " (go, which builds them, is not on PATH)"
        raise Unavailable(f"{TOOLS_SCRIPT.name} failed{hint}: {out.stderr[-3000:]}")
    bin_dir = Path(out.stdout.strip().splitlines()[-1])
    for name in ("kube-apiserver", "kubectl", "helm"):
        if not os.access(bin_dir / name, os.X_OK):
            raise Unavailable(f"{TOOLS_SCRIPT.name} left no {name} in {bin_dir}")
    return bin_dir


def base_with(root: Path, manifests: Path, *components: str) -> Path:
    """A kustomization at ``root`` (made here) of ``manifests/base`` with ``components``
    of ``manifests/components``, in that order, as a user's overlay would add them."""
    root.mkdir()
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(manifests / "base", root)],
                "components": [
                    os.path.relpath(manifests / "components" / c, root) for c in components
                ],
            }
        )
    )
    return root


def load_docs(yaml_text: str) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML stream."""
    return [d for d in yaml.safe_load_all(yaml_text) if d]


def _closed_schema(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever it lists ``properties``
    and does not keep unknown fields: the API server prunes (or, with strict field
    validation, rejects) fields a structural schema does not declare."""
    if isinstance(schema, list):
        return [_closed_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed_schema(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class Tools:
    """The checks that need no API server."""

    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        self.bin_dir = bin_dir
        self.crd_dir = bin_dir.parent / "crds"
        self.kubectl_bin = str(bin_dir / "kubectl")
        self.helm_bin = str(bin_dir / "helm")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._schemas: dict[tuple[str, str], Any] = {}
        # helm and kubectl keep caches and config under $HOME unless told otherwise
        self.env = dict(os.environ)
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            self.env[var] = str(workdir / "helm" / var.split("_")[1].lower())
        self.env["KUBECONFIG"] = str(workdir / "kubeconfig")

    def run(
        self, args: Sequence[str], *, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    # -- kubernetes-validate ------------------------------------------------------------

    def validate(self, yaml_text: str) -> tuple[bool, str]:
        """``kubernetes-validate --strict --quiet -k 1.34.0``: (passed, output). It stops at
        the first error of each object, knows no semantics and passes CRs with a warning."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=self.workdir, delete=False) as f:
            f.write(yaml_text)
        try:
            out = self.run(
                [
                    sys.executable,
                    "-m",
                    "kubernetes_validate",
                    "--strict",
                    "--quiet",
                    "-k",
                    KUBE_VERSION,
                    f.name,
                ]
            )
        finally:
            os.unlink(f.name)
        return out.returncode == 0, (out.stdout + out.stderr).replace(f.name, "<manifest>")

    # -- CRD schemas, offline -----------------------------------------------------------

    def crd_schema(self, api_version: str, kind: str) -> Any:
        """The closed ``openAPIV3Schema`` of a Prometheus Operator CRD version."""
        key = (api_version, kind)
        if key not in self._schemas:
            crd = yaml.safe_load((self.crd_dir / CRD_KINDS[key]).read_text())
            version = api_version.split("/")[1]
            [served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
            self._schemas[key] = _closed_schema(served["schema"]["openAPIV3Schema"])
        return self._schemas[key]

    def crd_check(self, docs: str | Iterable[Mapping[str, Any]]) -> list[str]:
        """Schema errors of the ServiceMonitor and PodMonitor objects among ``docs`` (a
        YAML stream or parsed documents), checked against the CRDs with unknown fields
        refused; other kinds are skipped. Each error reads ``Kind/name: path: message``."""
        import jsonschema

        if isinstance(docs, str):
            docs = load_docs(docs)
        errors: list[str] = []
        for doc in docs:
            key = (str(doc.get("apiVersion")), str(doc.get("kind")))
            if key not in CRD_KINDS:
                if key[0].startswith("monitoring.coreos.com/"):
                    errors.append(f"{key[1]}: no CRD for {key[0]} {key[1]} in {self.crd_dir}")
                continue
            name = (doc.get("metadata") or {}).get("name", "?")
            validator = jsonschema.Draft7Validator(self.crd_schema(*key))
            for err in sorted(validator.iter_errors(dict(doc)), key=lambda e: list(e.path)):
                path = ".".join(str(p) for p in err.absolute_path) or "<root>"
                errors.append(f"{key[1]}/{name}: {path}: {err.message}")
        return errors

    # -- kustomize and helm -------------------------------------------------------------

    def _checked(self, args: Sequence[str], what: str) -> str:
        out = self.run(args)
        if out.returncode != 0:
            raise ToolError(f"{what} failed (rc {out.returncode}):\n{out.stderr}{out.stdout}")
        return out.stdout

    def kustomize(self, directory: Path | str) -> str:
        """``kubectl kustomize DIR``: the rendered YAML stream (ToolError on failure)."""
        return self._checked([self.kubectl_bin, "kustomize", str(directory)], "kustomize")

    def _helm_values(
        self, value_files: Sequence[Path | str], values: Mapping[str, Any] | None
    ) -> list[str]:
        args: list[str] = []
        for path in value_files:
            args += ["-f", str(path)]
        if values:
            fd, name = tempfile.mkstemp(suffix=".values.json", dir=self.workdir)
            with os.fdopen(fd, "w") as f:
                json.dump(dict(values), f)  # JSON is YAML
            args += ["-f", name]
        return args

    def helm_template(
        self,
        chart_dir: Path | str,
        *value_files: Path | str,
        values: Mapping[str, Any] | None = None,
        release: str = "mlwatch",
        namespace: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> str:
        """``helm template`` for Kubernetes 1.34 with the monitoring.coreos.com/v1 API
        available: the rendered YAML stream (ToolError on failure). ``values`` is written
        to a file and given after the ``value_files``."""
        args = [
            self.helm_bin,
            "template",
            release,
            str(chart_dir),
            "--kube-version",
            KUBE_VERSION,
            "--api-versions",
            "monitoring.coreos.com/v1",
            *self._helm_values(value_files, values),
        ]
        if namespace:
            args += ["--namespace", namespace]
        return self._checked([*args, *extra_args], "helm template")

    def helm_lint(
        self,
        chart_dir: Path | str,
        *value_files: Path | str,
        values: Mapping[str, Any] | None = None,
        strict: bool = True,
    ) -> tuple[bool, str]:
        """``helm lint [--strict]``: (passed, output)."""
        args = [self.helm_bin, "lint", str(chart_dir), *self._helm_values(value_files, values)]
        if strict:
            args.append("--strict")
        out = self.run(args)
        return out.returncode == 0, out.stdout + out.stderr


class Cluster(Tools):
    """etcd plus kube-apiserver on free 127.0.0.1 ports, RBAC on, one static admin token,
    the Prometheus Operator CRDs applied. Use as a context manager or start()/stop()."""

    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        super().__init__(bin_dir, workdir)
        self.etcd_bin = shutil.which("etcd")
        self.openssl_bin = shutil.which("openssl")
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = workdir / "kubeconfig"
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self.namespaces: set[str] = {"default"}
        self.start_seconds: dict[str, float] = {}

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # own process group: stop() kills the whole group
        )
        self.procs.append((name, proc, log))

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _alive(self, name: str) -> None:
        for pname, proc, _ in self.procs:
            if pname == name and proc.poll() is not None:
                raise AssertionError(
                    f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}"
                )

    def _keys(self) -> None:
        if self.openssl_bin is None:
            raise Unavailable("openssl is not installed (apt-get install openssl)")
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        for args in (
            ["genrsa", "-out", str(key), "2048"],
            ["rsa", "-in", str(key), "-pubout", "-out", str(pub)],
        ):
            subprocess.run([self.openssl_bin, *args], check=True, capture_output=True, timeout=60)
        (self.workdir / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")

    def _readyz(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the server's own self-signed certificate
        req = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return bool(resp.status == 200 and resp.read().strip() == b"ok")
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection: not ready yet (500 while starting)
            return False

    def start(self, timeout: float = 90.0) -> Cluster:
        if self.etcd_bin is None:
            raise Unavailable("etcd is not installed (apt-get install etcd-server)")
        t0 = time.monotonic()
        try:
            self._keys()
            self._start_etcd(timeout)
            self.start_seconds["etcd"] = time.monotonic() - t0
            self._start_apiserver(timeout)
            self.start_seconds["kube-apiserver"] = time.monotonic() - t0
            self._write_kubeconfig()
            self._apply_crds(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds["total"] = time.monotonic() - t0
        return self

    def _start_etcd(self, timeout: float) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        assert self.etcd_bin is not None
        self._spawn(
            "etcd",
            [
                self.etcd_bin,
                "--name",
                "default",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"default={peer}",
            ],
        )

        def healthy() -> bool:
            self._alive("etcd")
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                    return bool(json.loads(resp.read()).get("health") == "true")
            except urllib.error.HTTPError as exc:
                exc.close()
                return False

        wait_until(healthy, timeout=timeout, interval=0.1, what="etcd /health")

    def _start_apiserver(self, timeout: float) -> None:
        w = self.workdir
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={w / 'certs'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={w / 'sa.pub'}",
                f"--service-account-signing-key-file={w / 'sa.key'}",
                f"--token-auth-file={w / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--enable-priority-and-fairness=false",
            ],
        )

        def ready() -> bool:
            self._alive("kube-apiserver")
            return self._readyz()

        wait_until(ready, timeout=timeout, interval=0.2, what="kube-apiserver /readyz")

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": "admin", "user": {"token": TOKEN}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _apply_crds(self, timeout: float) -> None:
        files = [self.crd_dir / f for f in CRD_KINDS.values()]
        for f in files:
            if not f.exists():
                raise Unavailable(f"{f} is missing (run .ci/k8s-tools.sh)")
        args = ["apply", "--server-side"]
        for f in files:
            args += ["-f", str(f)]
        self.kubectl_ok(*args)
        self.kubectl_ok(
            "wait",
            "--for=condition=Established",
            f"--timeout={int(timeout)}s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/podmonitors.monitoring.coreos.com",
        )
        # the discovery cache was filled before the CRDs' kinds existed
        shutil.rmtree(self.workdir / "kube-cache", ignore_errors=True)
        wait_until(
            lambda: self.kubectl("get", "namespace", "default").returncode == 0,
            timeout=timeout,
            what="the default namespace",
        )

    def stop(self) -> None:
        """SIGTERM each process group (the API server first), SIGKILL after 15 s."""
        for _name, proc, log in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
            log.close()
        self.procs.clear()

    # -- kubectl ------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            [
                self.kubectl_bin,
                f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={self.workdir / 'kube-cache'}",
                *args,
            ],
            input=input,
            timeout=timeout,
        )

    def kubectl_ok(self, *args: str, input: str | None = None) -> str:
        out = self.kubectl(*args, input=input)
        if out.returncode != 0:
            raise ToolError(f"kubectl {' '.join(args)} failed:\n{out.stderr}{out.stdout}")
        return out.stdout

    def ensure_namespace(self, name: str) -> None:
        """Create namespace ``name`` (for real) unless it exists."""
        if name in self.namespaces:
            return
        out = self.kubectl("create", "namespace", name)
        if out.returncode != 0 and "AlreadyExists" not in out.stderr:
            raise ToolError(f"kubectl create namespace {name} failed:\n{out.stderr}")
        self.namespaces.add(name)

    def dry_run(self, yaml_text: str, namespace: str | None = None) -> tuple[bool, str]:
        """``kubectl apply --server-side --dry-run=server -f -``: (passed, output).

        Every namespace the objects name (and ``namespace``) is created first for real: a
        Namespace object in the same stream is only dry-run, so it would not exist yet.
        Nothing else is stored."""
        for doc in load_docs(yaml_text):
            ns = (doc.get("metadata") or {}).get("namespace")
            if ns:
                self.ensure_namespace(str(ns))
        args = ["apply", "--server-side", "--dry-run=server", "--field-manager=mlwatch-tests"]
        if namespace:
            self.ensure_namespace(namespace)
            args += ["--namespace", namespace]
        out = self.kubectl(*args, "-f", "-", input=yaml_text)
        return out.returncode == 0, out.stdout + out.stderr


def copy_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a parsed manifest, for tests that break one field."""
    return copy.deepcopy(dict(doc))
