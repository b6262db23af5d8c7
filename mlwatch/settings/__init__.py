"""Every mlwatch setting and model spec: the table (:mod:`.config`), the model specs
(:mod:`.specs`, parsed by :mod:`.models` and :mod:`.monitoring`) and loading them
(:mod:`.loader`). ``python -m mlwatch.settings`` prints the reference table."""

from mlwatch.settings.config import Config, env_name, settings_fields, settings_table
from mlwatch.settings.durations import parse_duration
from mlwatch.settings.loader import load_config
from mlwatch.settings.specs import FeatureSpec, ModelSpec, Monitoring
from mlwatch.wire import NAME_RE

__all__ = [
    "NAME_RE",
    "Config",
    "FeatureSpec",
    "ModelSpec",
    "Monitoring",
    "env_name",
    "load_config",
    "parse_duration",
    "settings_fields",
    "settings_table",
]
