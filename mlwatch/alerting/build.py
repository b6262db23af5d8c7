"""``mlwatch alerts build``: every rule group and the Alertmanager configuration of a
config, as files under an output directory.

The groups are one per model with an ``alerts`` section, in the config's order, then
mlwatch's own. Writing replaces what changed and removes the rule files an earlier build
made for models that are gone (files without the generated header are never touched), so
the directory is always exactly what the config gives.
"""

from __future__ import annotations

from pathlib import Path

from mlwatch.alerting.render import MARK, RULES_DIR, render_files
from mlwatch.alerting.routing import alertmanager_config
from mlwatch.alerting.rules import Group, Options
from mlwatch.alerting.rules_model import model_group
from mlwatch.alerting.rules_self import self_group
from mlwatch.errors import ConfigError
from mlwatch.settings import Config


def build_groups(config: Config, options: Options) -> list[Group]:
    """Every rule group of ``config``; two models whose names give one file name (``a:b``
    and ``a_b``) are a configuration error."""
    groups: list[Group] = []
    files = {"mlwatch.rules.yml"}
    for i, spec in enumerate(config.models):
        if spec.alerts is None:
            continue
        group = model_group(spec, f"models[{i}]", options, config.source)
        if group.file in files:
            raise ConfigError(
                f"models[{i}].name",
                f"{spec.name!r} gives the same rule file as another model ({group.file})",
                source=config.source,
            )
        files.add(group.file)
        groups.append(group)
    groups.append(self_group(config, options))
    return groups


def build_files(config: Config, options: Options) -> dict[str, str]:
    """Every generated file of ``config`` by its path under the output directory."""
    return render_files(
        build_groups(config, options), alertmanager_config(config, options), options
    )


def differences(files: dict[str, str], out: Path) -> list[str]:
    """The paths under ``out`` that differ from ``files``: changed, missing, or a rule
    file of an earlier build that is no longer made."""
    changed = [
        path
        for path, text in sorted(files.items())
        if not (out / path).is_file() or (out / path).read_text(encoding="utf-8") != text
    ]
    return changed + [str(p.relative_to(out)) for p in stale(files, out)]


def stale(files: dict[str, str], out: Path) -> list[Path]:
    """Generated rule files under ``out`` that ``files`` no longer has."""
    old = sorted((out / RULES_DIR).glob("*.yml")) if (out / RULES_DIR).is_dir() else []
    return [
        p
        for p in old
        if f"{RULES_DIR}/{p.name}" not in files and p.read_text(encoding="utf-8").startswith(MARK)
    ]


def write_files(files: dict[str, str], out: Path) -> list[str]:
    """Write ``files`` under ``out``; the paths written or removed, for the report."""
    touched = differences(files, out)
    for old in stale(files, out):
        old.unlink()
    for name, text in files.items():
        target = out / name
        if name in touched:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return touched
