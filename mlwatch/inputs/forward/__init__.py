"""The sidecar's Fluentd forward-protocol input (on ``forward_port``)."""

from mlwatch.inputs.forward.server import ForwardInput

__all__ = ["ForwardInput"]
