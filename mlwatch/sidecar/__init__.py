"""The sidecar: HTTP routes (:mod:`.app`), ingest and lifecycle (:mod:`.service`), its
metrics (:mod:`.metrics`) and running it under uvicorn (:mod:`.server`)."""
