"""A small real model server for the proxy's tests and benchmark: a scikit-learn
classifier on iris behind a plain ASGI app that speaks the Open Inference Protocol v2
(``/v2/models/iris/infer``) and TensorFlow Serving's REST API
(``/v1/models/iris:predict``), plus a few misbehaving routes:

- ``/v2/models/broken/infer``: 200 with a body that is not JSON;
- ``/v2/models/failing/infer``: 500;
- ``GET /big?n=``: a streamed answer of ``n`` bytes in 64 KiB chunks;
- ``GET /slow?s=``: an answer after ``s`` seconds.

Run it with uvicorn (:class:`ModelServer` does, in a thread, on a free port).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

IRIS = load_iris()
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
MODEL = LogisticRegression(max_iter=500).fit(IRIS.data, IRIS.target)
# The fitted model's decision function, for the v2 route: the label LogisticRegression.predict
# gives (the class of the largest score) without its ~0.2 ms of input checks a call, which
# at 2,000 calls/s would take a third of the benchmark's two cores (test_capture compares
# the labels with MODEL.predict).
COEF, INTERCEPT = MODEL.coef_.T.copy(), MODEL.intercept_.copy()
CHUNK = 64 * 1024


def oip_answer(body: dict[str, Any]) -> dict[str, Any]:
    tensor = body["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=float).reshape(tensor["shape"])
    labels = MODEL.classes_[(rows @ COEF + INTERCEPT).argmax(axis=1)].tolist()
    return {
        "model_name": "iris",
        "model_version": "1",
        "id": body.get("id", ""),
        "outputs": [
            {"name": "label", "shape": [len(labels), 1], "datatype": "INT64", "data": labels}
        ],
    }


def tf_answer(body: dict[str, Any]) -> dict[str, Any]:
    rows = [
        [inst[f] for f in FEATURES] if isinstance(inst, dict) else inst
        for inst in body["instances"]
    ]
    return {"predictions": MODEL.predict_proba(np.asarray(rows, dtype=float)).round(6).tolist()}


async def _read(receive: Any) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send: Any, status: int, body: bytes, ctype: bytes = b"application/json") -> None:
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"x-model-server", b"iris"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The model server (see the module doc)."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    raw = await _read(receive)
    if method == "GET" and path == "/big":
        n = int(scope["query_string"].decode().partition("=")[2] or 0)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        for at in range(0, n, CHUNK):
            await send(
                {
                    "type": "http.response.body",
                    "body": bytes([at // CHUNK % 251]) * min(CHUNK, n - at),
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})
    elif method == "GET" and path == "/slow":
        await asyncio.sleep(float(scope["query_string"].decode().partition("=")[2]))
        await _send(send, 200, b"late")
    elif path == "/v2/models/iris/infer":
        await _send(send, 200, json.dumps(oip_answer(json.loads(raw))).encode())
    elif path == "/v1/models/iris:predict":
        await _send(send, 200, json.dumps(tf_answer(json.loads(raw))).encode())
    elif path == "/v2/models/broken/infer":
        await _send(send, 200, b"{not json", b"application/json")
    elif path == "/v2/models/failing/infer":
        await _send(send, 500, b'{"error": "model failed"}')
    elif path == "/v2/health/ready":
        await _send(send, 200, b"")
    else:
        await _send(send, 404, b'{"error": "not found"}')


class ModelServer:
    """The app under uvicorn in a thread, on a free port; ``with ModelServer() as url``."""

    def __init__(self, port: int = 0, certs: Path | None = None) -> None:
        """``certs``: a directory from ``tests.helpers.make_certs``, to serve HTTPS."""
        import uvicorn

        from tests.helpers import free_port

        self.port = port or free_port()
        self.url = f"{'https' if certs else 'http'}://127.0.0.1:{self.port}"
        tls: dict[str, Any] = {}
        if certs is not None:
            tls = {"ssl_certfile": str(certs / "node.crt"), "ssl_keyfile": str(certs / "node.key")}
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", **tls
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="model-server", daemon=True)

    def __enter__(self) -> str:
        from tests.helpers import wait_until

        self._thread.start()
        wait_until(lambda: self._server.started, timeout=30, what="the model server to start")
        return self.url

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
