"""The ``mlwatch`` command: one entry point, one module per subcommand.

Settings come from ``--config`` / ``MLWATCH_CONFIG`` and ``MLWATCH_*`` variables (see
:mod:`mlwatch.settings`); the few flags override them. Secrets such as the token are read
from the environment or files only, never from flags (they would show in ``ps``). Any
:class:`~mlwatch.errors.MlwatchError` is printed as one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlwatch.errors import ConfigError, MlwatchError

COMMANDS = (
    "sidecar",
    "scheduler",
    "status",
    "events",
    "retrain",
    "drift",
    "compare",
    "report",
    "alerts",
    "dashboards",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="mlwatch",
        description="Monitoring for ML services: run the sidecar or the "
        "scheduler, look at the stored models and events, compare two data files for "
        "drift, or try the end-to-end demo.",
    )
    from mlwatch import __version__

    parser.add_argument("-V", "--version", action="version", version=f"mlwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mlwatch.cli.{name}").add_parser(sub)
    return parser


def secret_flag(argv: Sequence[str]) -> str | None:
    """The message for a secret given as a flag (``--token x``), which the command never
    takes: it would show in ``ps`` and in shell histories."""
    from mlwatch.settings import env_name, settings_fields

    secrets = {f.name for f in settings_fields() if f.metadata.get("secret")}
    for arg in argv:
        name = arg[2:].split("=", 1)[0].replace("-", "_") if arg.startswith("--") else ""
        stem = name.removesuffix("_file")
        # argparse takes an unambiguous prefix (--tok) for an option: so does this check
        secret = next((s for s in secrets if len(stem) >= 3 and s.startswith(stem)), None)
        if secret is not None:
            var = env_name(secret)
            return (
                f"--{arg[2:].split('=', 1)[0]} is not a flag: secrets never come from the "
                f"command line (it shows in ps). Set {var}, or {var}_FILE=/path/to/file, "
                f"or {secret}_file: in the config file"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if message := secret_flag(argv):
        print(f"mlwatch: {message}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mlwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except MlwatchError as exc:
        print(f"mlwatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
