"""The Fluentd forward protocol, spoken by the client exporter and the sidecar input."""
