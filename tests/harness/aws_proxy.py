"""An HTTP proxy in front of moto's server that makes AWS races and interrupt windows real.

The CLI under test gets AWS_ENDPOINT_URL=proxy.url. Every request is relayed to moto as it is;
the test can

- delay requests (all of them, or one EC2 Action), so that two processes' calls interleave;
- hold the next request of one EC2 Action (`Action=` of the form-encoded body): the proxy
  signals that it arrived and keeps it until the test releases it, then forwards it, so moto
  still carries it out, as AWS would carry out a request that reached it although the client
  was interrupted while waiting for the answer.

`fail(action, code, message)` answers the next requests of one Action with AWS's own error
document (never reaching moto): the way to meet errors moto cannot produce, such as
InsufficientInstanceCapacity on StartInstances, through the real CLI.

A hold with `barrier=True` also makes every later request wait until the held one has been
carried out: AWS serves a request that reached it before the ones sent after it, so what an
interrupted client asks next sees the held request's effect, deterministically.

    with AwsProxy(moto_url) as proxy:
        hold = proxy.hold("RunInstances", barrier=True)
        proc = start the CLI with AWS_ENDPOINT_URL=proxy.url
        hold.wait_arrived()
        proc.send_signal(signal.SIGINT)
        hold.release()
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


class Hold:
    """The next request of one Action, kept at the proxy until `release()`."""

    def __init__(self, action: str, barrier: bool) -> None:
        self.action = action
        self.barrier = barrier
        self.arrived = threading.Event()
        self.done = threading.Event()
        """Set once moto answered the released request."""
        self._released = threading.Event()
        self.body = b""

    def wait_arrived(self, timeout: float = 60) -> None:
        if not self.arrived.wait(timeout):
            raise AssertionError(f"no {self.action} request reached the proxy in {timeout}s")

    def release(self, wait_done: float | None = 30) -> None:
        """Forward the held request to moto (and, by default, wait until moto answered it)."""
        self._released.set()
        if wait_done and self.arrived.is_set() and not self.done.wait(wait_done):
            raise AssertionError(f"moto did not answer the released {self.action} request")


class AwsProxy:
    def __init__(self, upstream: str, *, delay: float = 0.0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.delay = delay
        """Seconds added before relaying every request."""
        self.action_delays: dict[str, float] = {}
        self.seen: list[str] = []
        """The Action of every request relayed, in arrival order."""
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        """(Action, form fields) of every request relayed, in arrival order."""
        self._holds: list[Hold] = []
        self._failures: list[list[Any]] = []
        """[action, code, message, status, times left] answered instead of relaying."""
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> AwsProxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for hold in self._holds:  # never leave a client hanging
            hold._released.set()
        self._gate.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def hold(self, action: str, *, barrier: bool = False) -> Hold:
        """Hold the next request of `action` (after any earlier holds of it are used up)."""
        hold = Hold(action, barrier)
        with self._lock:
            self._holds.append(hold)
        return hold

    def fail(
        self, action: str, code: str, message: str, *, status: int = 500, times: int = 10
    ) -> None:
        """Answer the next `times` requests of `action` with AWS's error `code` (EC2's XML).

        Server-side codes (capacity) come with HTTP 500, which botocore retries: `times`
        covers the retries, like a zone that stays full."""
        with self._lock:
            self._failures.append([action, code, message, status, times])

    def _failure(self, action: str) -> tuple[str, str, int] | None:
        with self._lock:
            for entry in self._failures:
                if entry[0] == action and entry[4] > 0:
                    entry[4] -= 1
                    return entry[1], entry[2], entry[3]
        return None

    def count(self, action: str) -> int:
        with self._lock:
            return self.seen.count(action)

    # -- called by the handler threads ---------------------------------------------------------
    def _admit(self, action: str, fields: dict[str, list[str]]) -> Hold | None:
        """Log the request; take the first armed hold for its Action (closing the gate for a
        barrier hold), or wait while a barrier hold is closed."""
        while True:
            with self._lock:
                hold = next(
                    (h for h in self._holds if h.action == action and not h.arrived.is_set()),
                    None,
                )
                if hold is not None:
                    self.seen.append(action)
                    self.requests.append((action, fields))
                    hold.arrived.set()
                    if hold.barrier:
                        self._gate.clear()
                    return hold
                if self._gate.is_set():
                    self.seen.append(action)
                    self.requests.append((action, fields))
                    return None
            self._gate.wait(0.05)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: AwsProxy

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self._relay()

    def do_GET(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        proxy = self.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fields = urllib.parse.parse_qs(body.decode("latin-1")) if body else {}
        action = (fields.get("Action") or [""])[0]
        hold = proxy._admit(action, fields)
        failure = proxy._failure(action)
        if failure is not None:
            code, message, status = failure
            data = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return
        pause = proxy.delay + proxy.action_delays.get(action, 0.0)
        if pause:
            time.sleep(pause)
        if hold is not None:
            hold.body = body
            hold._released.wait()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            status, resp_headers, data = proxy._forward(self.command, self.path, headers, body)
        finally:
            if hold is not None:
                hold.done.set()
                if hold.barrier:
                    proxy._gate.set()
        try:
            self.send_response(status)
            for key, value in resp_headers:
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client gave up (an interrupted CLI): moto has carried it out
            self.close_connection = True
