"""Proxy mode: the sidecar as a reverse proxy in front of an unmodified model server.

Calls are forwarded as they come (:mod:`.forward`, over keep-alive connections to the
model server: :mod:`.upstream`, :mod:`.connection`) and, off the request path, turned
into prediction events (:mod:`.exchange` → :mod:`.events`, with one parser per protocol:
:mod:`.oip`, :mod:`.tfserving`, :mod:`.jsonpaths`) that enter the sidecar's own ingest
path (:mod:`.recorder`). Capture never changes what the caller receives; what it cannot
record is counted. docs/proxy.md describes it for users.
"""
