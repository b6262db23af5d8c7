"""Storage of events, feedback and model registrations."""

from mlwatch.store.sqlite import EmbeddedStore, StoreError

__all__ = ["EmbeddedStore", "StoreError"]
