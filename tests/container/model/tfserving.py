"""A model server that knows nothing of mlwatch, speaking TensorFlow Serving's REST API:
``POST /v1/models/<name>:predict`` with ``{"instances": [[x], ...]}`` answers
``{"predictions": [0 or 1, ...]}``. It listens on 127.0.0.1:8501, where only the pod's
proxy reaches it."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        predictions = [int(row[0] > 0.5) for row in body["instances"]]
        answer = json.dumps({"predictions": predictions}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 8501), Handler).serve_forever()
