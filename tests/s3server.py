"""A real S3-compatible server on 127.0.0.1 for the tests: moto's server mode.

moto's WSGI application is served by werkzeug on an ephemeral port, behind a middleware
that counts requests (method and path), so tests can count what a read costs on S3.
Nothing outside this machine is contacted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from typing import Any

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

CREDENTIALS = {"key": "testing", "secret": "testing"}


class S3Server:
    """Start with ``start()``; ``options()`` are fsspec storage_options for it."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self.faults: list[int] = []  # HTTP statuses to answer the next requests with
        self.outage_after: int | None = None  # answer 503 to everything after n more requests
        self.latency = 0.0  # seconds added to every GET
        self.in_flight = 0
        self.max_in_flight = 0

    def _app(self) -> Any:
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            with self._lock:
                self.requests[(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))] += 1
                fault = self.faults.pop(0) if self.faults else None
                if self.outage_after is not None:
                    if self.outage_after <= 0:
                        fault = 503
                    self.outage_after -= 1
            if fault is not None:
                start_response(f"{fault} Injected", [("Content-Type", "text/plain")])
                return [b"injected fault"]
            if not self.latency or environ["REQUEST_METHOD"] != "GET":
                return moto_app(environ, start_response)
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                time.sleep(self.latency)
                return moto_app(environ, start_response)
            finally:
                with self._lock:
                    self.in_flight -= 1

        return app

    def start(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self._server = make_server(
            "127.0.0.1", 0, self._app(), threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def options(self) -> dict[str, Any]:
        return {**CREDENTIALS, "endpoint_url": self.endpoint}

    def new_bucket(self) -> str:
        import s3fs

        name = f"zstore-{uuid.uuid4().hex[:12]}"
        fs = s3fs.S3FileSystem(**self.options())
        fs.mkdir(name)
        return name

    def count(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    def count_of(self, part: str) -> int:
        """Requests whose path contains ``part`` (e.g. "/chunks/")."""
        with self._lock:
            return sum(n for (_, path), n in self.requests.items() if part in path)
