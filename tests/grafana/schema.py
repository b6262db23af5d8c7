"""Grafana's published dashboard schema as a check: each dashboard is written into a
TypeScript file as ``const dashboard: Json<Dashboard> = <the JSON>;`` and compiled with
``tsc --noEmit --strict`` against ``@grafana/schema`` (npm, Apache-2.0), the types
Grafana's own frontend is built with.

An object literal gets TypeScript's excess-property check, so an unknown key fails as
well as a wrong type or a missing required key. Two adaptations, both narrow:

- JSON has no enums: ``Json<T>`` turns each string enum into the union of its values
  (``ThresholdsMode`` becomes ``"absolute" | "percentage"``);
- the schema leaves a datasource's query open (``DataQuery`` has only ``refId`` and a few
  common keys; a panel's ``targets`` are any objects) and the annotation options of a
  datasource out: the Prometheus query keys and the Prometheus annotation keys
  (``titleFormat``, ``tagKeys``, ``useValueForTime``) are declared here, and nothing else.
  The panels' queries are checked apart, each against its datasource's type: Prometheus
  ones against that declaration, Elasticsearch ones against the schema's own
  ``ElasticsearchDataQuery`` (its metric and bucket aggregations included).

The npm packages are installed once, pinned, under
``~/.cache/mlwatch/grafana-schema-<schema version>`` (``npm install --prefix``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "11.6.16"  # the Grafana the pinned grafana-foundation-sdk builds for
TYPESCRIPT_VERSION = "5.9.3"
HOME = Path(os.environ.get("MLWATCH_CACHE", Path.home() / ".cache" / "mlwatch"))

PRELUDE = """\
import type { AnnotationQuery, Dashboard, DataQuery } from "@grafana/schema";
import type { ElasticsearchDataQuery } from "@grafana/schema/dist/esm/raw/composable/elasticsearch/dataquery/x/ElasticsearchDataQuery_types.gen.js";

/** A Prometheus query as Grafana stores it. */
interface PromQuery extends DataQuery {
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
  interval?: string;
  format?: "time_series" | "table" | "heatmap";
  editorMode?: "code" | "builder";
  exemplar?: boolean;
  intervalFactor?: number;
}

/** What the Prometheus datasource reads from an annotation besides its query. */
interface PromAnnotationOptions {
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}

/** The dashboard as JSON: an enum-typed field holds the enum's value; a query is Prometheus's. */
type Json<T> = unknown extends T
  ? T
  : T extends string
    ? `${T}`
    : T extends number | boolean | null | undefined
      ? T
      : T extends DataQuery
        ? { [K in keyof PromQuery]: Json<PromQuery[K]> }
        : T extends readonly (infer E)[]
          ? Json<E>[]
          : { [K in keyof T]: Json<T[K]> };

type Checked = Omit<Json<Dashboard>, "annotations"> & {
  annotations?: { list?: Array<Json<AnnotationQuery> & PromAnnotationOptions> };
};

/** The queries of the panels on one datasource type. */
type Targets<Q> = Array<{ [K in keyof Q]: Json<Q[K]> }>;
"""


def node_tools() -> tuple[str, str] | None:
    """``node`` and ``npm`` on PATH, or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def install() -> Path:
    """The directory holding the pinned packages, installed on first use."""
    home = HOME / f"grafana-schema-{SCHEMA_VERSION}"
    if (home / "node_modules" / ".bin" / "tsc").exists():
        return home
    tmp = HOME / f"grafana-schema-{SCHEMA_VERSION}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    npm = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(tmp),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"@grafana/schema@{SCHEMA_VERSION}",
            f"typescript@{TYPESCRIPT_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if npm.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"npm could not install @grafana/schema: {npm.stderr[-2000:]}")
    try:
        os.replace(tmp, home)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return home


def targets(board: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The queries of ``board``'s panels whose datasource is of type ``kind``."""
    return [
        target
        for panel in board.get("panels", [])
        if panel.get("datasource", {}).get("type") == kind
        for target in panel.get("targets", [])
    ]


def check(dashboards: dict[str, str], workdir: Path) -> str:
    """Compile every dashboard (name -> JSON text) against the schema in one ``tsc`` run;
    the compiler's messages, empty when every dashboard conforms."""
    home = install()
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(home / "node_modules")
    names = []
    for i, (name, text) in enumerate(sorted(dashboards.items())):
        source = workdir / f"dashboard{i}.ts"
        literal = json.dumps(json.loads(text), indent=2)
        board = json.loads(text)
        checks = [f"export const dashboard: Checked = {literal};"]
        for kind, query in (
            ("prometheus", "PromQuery"),
            ("elasticsearch", "ElasticsearchDataQuery"),
        ):
            found = json.dumps(targets(board, kind), indent=2)
            checks.append(f"export const {kind}: Targets<{query}> = {found};")
        source.write_text(f"// {name}\n{PRELUDE}\n" + "\n".join(checks) + "\n")
        names.append(source.name)
    tsc = subprocess.run(
        [
            str(home / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "--target",
            "es2022",
            *names,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return "" if tsc.returncode == 0 else (tsc.stdout + tsc.stderr)
