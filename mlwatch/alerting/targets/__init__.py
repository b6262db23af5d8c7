"""The CI/CD targets a retraining trigger goes to, one module per provider, each built to
its provider's documented API (:class:`mlwatch.alerting.trigger.Target`)."""
