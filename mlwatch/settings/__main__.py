"""``python -m mlwatch.settings`` prints the settings reference table (docs/configuration.md)."""

from mlwatch.settings.config import settings_table

print(settings_table(), end="")
