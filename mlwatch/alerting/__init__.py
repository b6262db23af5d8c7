"""What mlwatch does about a problem it found: alert rules generated from the config
(:mod:`.rules`), the Alertmanager receiver, retraining policies, the durable outbox of
triggers, and the CI/CD targets they go to (:mod:`.targets`)."""
