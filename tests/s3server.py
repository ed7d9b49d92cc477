"""A real S3-compatible server on 127.0.0.1 for the tests: moto's server mode.

moto's WSGI application is served by werkzeug on an ephemeral port, behind a middleware
that counts requests (method and path), so tests can count what a read costs on S3.
Nothing outside this machine is contacted.
"""

from __future__ import annotations

import collections
import threading
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
            return moto_app(environ, start_response)

        return app

    def start(self) -> S3Server:
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
