"""A model server as a team writes one: plain HTTP, the mlwatch decorator on its predict
function, the sidecar found through MLWATCH_SIDECAR_URL and MLWATCH_TOKEN_FILE (the pod's
environment). POST {"x": <number>} to /predict answers {"prediction": 0 or 1}."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlwatch


@mlwatch.monitor(model="model", version="1")
def predict(x: float) -> int:
    return int(x > 0.5)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"prediction": predict(float(body["x"]))}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(os.environ.get("MODEL_PORT", "8080"))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
