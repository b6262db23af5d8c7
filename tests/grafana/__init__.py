"""Tests of the Grafana sync, against a fake Grafana that checks requests as Grafana documents them."""
