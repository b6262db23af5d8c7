"""Grafana dashboards as code: one overview, drift and performance dashboard per model, one
for mlwatch's own health and one across the fleet, built from ``mlwatch.yaml`` with
grafana-foundation-sdk (the ``mlwatch[grafana]`` extra) and rendered apart as JSON and
provisioning files (``mlwatch dashboards build``, docs/grafana.md).

The builders return the SDK's plain dashboard objects; :mod:`.render` alone turns them
into bytes, so a test can look at a panel without parsing JSON.
"""
