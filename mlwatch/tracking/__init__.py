"""MLflow: who a model is (identity), its reference data, and monitoring results back.

The modules here import ``mlflow`` inside their functions, never at import time: the
client imports :mod:`mlwatch.tracking.uris` on its hot path's setup, and a model server
without the ``mlflow`` extra must not pay for (or fail on) MLflow.
"""
