"""The shape of the package: dependencies point one way, one exception tree.

Layers, lowest first; a module imports only from its own layer or the ones below, and
no two modules import each other, even through function-level (lazy) imports. The
client, which runs inside model servers, imports only the core and the embedded store
(both standard library only).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import mlwatch
from mlwatch.errors import MlwatchError

ROOT = Path(mlwatch.__file__).parent
LAYERS = [
    (
        "core",
        (
            "mlwatch.errors",
            "mlwatch.ids",
            "mlwatch.times",
            "mlwatch.dotted",
            "mlwatch.logs",
            "mlwatch.progress",
            "mlwatch.wire",
            "mlwatch.settings",
            "mlwatch.redact",
            "mlwatch.forward",
            "mlwatch.tracking",
        ),
    ),
    ("stats", ("mlwatch.stats",)),
    ("store", ("mlwatch.store",)),
    (
        "sinks, inputs, client",
        ("mlwatch.sinks", "mlwatch.elastic", "mlwatch.inputs", "mlwatch.client", "mlwatch"),
    ),
    ("alerting, grafana, report", ("mlwatch.alerting", "mlwatch.grafana", "mlwatch.report")),
    ("sidecar, scheduler", ("mlwatch.sidecar", "mlwatch.scheduler", "mlwatch.proxy")),
    ("cli", ("mlwatch.cli", "mlwatch.__main__")),
]
CLIENT_MAY_IMPORT = (
    "mlwatch.store.embedded",
    "mlwatch.store.database",
    "mlwatch.store.window_reads",
    "mlwatch.store.results",
    "mlwatch.store.report_reads",
    "mlwatch.store.rows",
    "mlwatch.store.schema",
    "mlwatch.store",
)


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def layer_of(module: str) -> tuple[int, str]:
    """(rank, prefix) of the longest layer prefix that names ``module``."""
    best = (-1, "", "")
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (rank, prefix, prefix)
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[0], best[1]


def imports_of(module: str) -> set[str]:
    """Every mlwatch module ``module`` imports, at the top or inside a function."""
    tree = ast.parse(MODULES[module].read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "mlwatch":
                continue
            for alias in node.names:  # "from mlwatch import wire" imports mlwatch.wire
                name = f"{node.module}.{alias.name}"
                out.add(name if name in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "mlwatch")
    out.discard(module)
    return {name for name in out if name in MODULES}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    rank, _ = layer_of(module)
    upward = [
        (target, LAYERS[layer_of(target)[0]][0])
        for target in GRAPH[module]
        if layer_of(target)[0] > rank
    ]
    assert not upward, f"{module} ({LAYERS[rank][0]}) imports from a higher layer: {upward}"


def test_the_client_imports_only_the_core_and_the_embedded_store() -> None:
    for module in (m for m in MODULES if m.startswith("mlwatch.client")):
        for target in GRAPH[module]:
            ok = (
                layer_of(target)[0] == 0
                or target in CLIENT_MAY_IMPORT
                or target.startswith("mlwatch.client")
            )
            assert ok, f"{module} imports {target}: the client takes the core and store only"


def test_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_checks_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upward import (store -> sidecar), a cycle and a client import of the sinks are
    each caught and named."""
    monkeypatch.setitem(
        GRAPH, "mlwatch.store.spool", GRAPH["mlwatch.store.spool"] | {"mlwatch.sidecar.service"}
    )
    with pytest.raises(AssertionError, match="imports from a higher layer"):
        test_imports_point_down("mlwatch.store.spool")
    monkeypatch.setitem(GRAPH, "mlwatch.times", GRAPH["mlwatch.times"] | {"mlwatch.wire"})
    with pytest.raises(AssertionError):
        test_no_import_cycle()
    monkeypatch.setitem(
        GRAPH, "mlwatch.client.shipper", GRAPH["mlwatch.client.shipper"] | {"mlwatch.sinks.base"}
    )
    with pytest.raises(AssertionError, match="the client takes the core and store only"):
        test_the_client_imports_only_the_core_and_the_embedded_store()
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("elsewhere.module")


def test_every_exception_class_derives_from_mlwatch_error() -> None:
    found = []
    for info in pkgutil.walk_packages(mlwatch.__path__, "mlwatch."):
        if info.name == "mlwatch.__main__":
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("mlwatch"):
                found.append(cls)
                assert issubclass(cls, MlwatchError), f"{cls.__module__}.{cls.__qualname__}"
    assert len(set(found)) >= 12  # the tree in mlwatch/errors.py


def test_every_error_is_in_the_documented_tree() -> None:
    from mlwatch import errors

    doc = errors.__doc__ or ""
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, BaseException):
            assert cls.__name__ in doc, f"{cls.__name__} is not in the tree of errors.py"
