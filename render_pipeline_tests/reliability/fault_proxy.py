"""An HTTP fault proxy between the project and the S3 endpoint (moto's server in tests).

It forwards every request unchanged to the upstream endpoint unless a rule matches, in which
case it can answer with an S3 error (500/503/SlowDown…), reset the TCP connection, or stall
past the client's read timeout (optionally after forwarding, so the write did happen).  Rules
select requests by S3 operation and key prefix and fire on the Nth match, the first N matches,
a seeded fraction, or every match.  Every request is logged so tests can assert what happened.

Only the wire is faulted: boto3, botocore and the product code run unmodified.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit, parse_qs

ERROR_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message>{extra}<RequestId>fault-proxy</RequestId></Error>"
)
ERROR_MESSAGES = {
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "AccessDenied": "Access Denied",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
}
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class S3Request:
    method: str
    op: str  # get | head | put | delete | list | delete_many | bucket | other
    key: str  # object key ('' for bucket-level requests; the prefix for list)


@dataclass
class Rule:
    """What to do with matching requests; see the module docstring.

    ``action``: "error" (``status`` + S3 ``code``), "reset" (TCP RST, no response) or "stall"
    (hold the connection ``stall_seconds``, then drop it; with ``forward_first`` the request
    reaches the server first).  ``ops``/``key_prefix`` select requests; the first ``skip``
    matches pass untouched; then ``nth`` fires on the Nth match only, ``times`` on the first N
    matches, ``fraction`` on a seeded random share; with none of them every match fires.  When a rule fires, ``before`` runs (in the proxy
    thread) before the request is handled, and ``after`` once the upstream answered and before
    the client gets the answer (e.g. to hold a listing while the bucket changes).  Action
    "pass" forwards the request unchanged: it only counts matches and runs the hooks.
    """

    action: str = "error"
    status: int = 503
    code: str = "SlowDown"
    ops: tuple[str, ...] | None = None
    key_prefix: str | None = None
    skip: int = 0
    nth: int | None = None
    times: int | None = None
    fraction: float | None = None
    seed: int = 0
    extra_xml: str = ""  # more elements in the error body (AWS echoes e.g. <AWSAccessKeyId>)
    stall_seconds: float = 5.0
    forward_first: bool = False
    before: Callable[[S3Request], None] | None = None
    after: Callable[[S3Request], None] | None = None
    matched: int = 0
    fired: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ("error", "reset", "stall", "pass"):
            raise ValueError(f"unknown action {self.action!r}")
        self._random = random.Random(self.seed)

    def matches(self, request: S3Request) -> bool:
        if self.ops is not None and request.op not in self.ops:
            return False
        return self.key_prefix is None or request.key.startswith(self.key_prefix)

    def decide(self) -> bool:
        """Called once per matching request (under the proxy lock): does the fault fire?"""
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.nth is not None:
            fire = self.matched - self.skip == self.nth
        elif self.times is not None:
            fire = self.matched - self.skip <= self.times
        elif self.fraction is not None:
            fire = self._random.random() < self.fraction
        else:
            fire = True
        self.fired += fire
        return fire


@dataclass(frozen=True)
class LoggedRequest:
    request: S3Request
    outcome: str  # "forwarded <status>", "error <status> <code>", "reset", "stall", "upstream failed"


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1; use as a context manager or call close()."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rules: list[Rule] = []
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, rule: Rule | None = None, **kwargs) -> Rule:
        rule = rule or Rule(**kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def outage(self, seconds: float, **kwargs) -> Rule:
        """A fault rule (``kwargs`` as for ``add``) that is removed ``seconds`` from now: every
        matching request fails for that long, as in a real outage."""
        rule = self.add(**kwargs)
        timer = threading.Timer(seconds, self.remove, args=(rule,))
        timer.daemon = True
        timer.start()
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            self.rules = [r for r in self.rules if r is not rule]

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def requests(self, *, op: str | None = None, key_prefix: str = "", outcome_prefix: str = "") -> list[LoggedRequest]:
        with self._lock:
            entries = list(self.log)
        return [
            e for e in entries
            if (op is None or e.request.op == op) and e.request.key.startswith(key_prefix)
            and e.outcome.startswith(outcome_prefix)
        ]

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- used by the handler ------------------------------------------------------------------

    def _choose(self, request: S3Request) -> tuple[Rule | None, list[Rule]]:
        """The first fault rule that fires (if any), and every rule that fired (for hooks)."""
        with self._lock:
            fired: list[Rule] = []
            fault: Rule | None = None
            for rule in self.rules:
                if not rule.matches(request):
                    continue
                if rule.action == "pass":
                    if rule.decide():
                        fired.append(rule)
                elif fault is None and rule.decide():
                    fault = rule
                    fired.append(rule)
            return fault, fired

    def _record(self, request: S3Request, outcome: str) -> None:
        with self._lock:
            self.log.append(LoggedRequest(request, outcome))


def classify(method: str, path: str) -> S3Request:
    """Path-style S3 requests: /bucket[/key][?query]."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    _, _, rest = parts.path.lstrip("/").partition("/")
    key = unquote(rest)
    if not rest:
        if method == "GET" and ("list-type" in query or "prefix" in query or not query):
            return S3Request(method, "list", query.get("prefix", [""])[0])
        if method == "POST" and "delete" in query:
            return S3Request(method, "delete_many", "")
        return S3Request(method, "bucket", "")
    op = {"GET": "get", "HEAD": "head", "PUT": "put", "DELETE": "delete"}.get(method, "other")
    return S3Request(method, op, key)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._read_body()
        request = classify(self.command, self.path)
        rule, fired = self.owner._choose(request)
        for candidate in fired:
            if candidate.before is not None:
                candidate.before(request)
        if rule is None:
            self._forward(request, body, hooks=[c.after for c in fired if c.after is not None])
        elif rule.action == "error":
            self._send_error(request, rule)
        elif rule.action == "reset":
            self.owner._record(request, "reset")
            self._reset()
        else:  # stall
            if rule.forward_first:
                self._forward(request, body, respond=False)
            self.owner._record(request, "stall")
            self.owner._closing.wait(rule.stall_seconds)
            self.close_connection = True

    def _forward(self, request: S3Request, body: bytes, *, respond: bool = True, hooks=()) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(self.owner.upstream_host, self.owner.upstream_port, timeout=60)
        try:
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            status, reason, response_headers = response.status, response.reason, response.getheaders()
        except OSError as exc:
            self.owner._record(request, f"upstream failed {exc}")
            self._reset()
            return
        finally:
            connection.close()
        self.owner._record(request, f"forwarded {status}")
        for hook in hooks:
            hook(request)
        if not respond:
            return
        self.send_response(status, reason)
        for name, value in response_headers:
            if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":  # a HEAD response announces the object's length, with no body
            length = dict((k.lower(), v) for k, v in response_headers).get("content-length", "0")
            self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_error(self, request: S3Request, rule: Rule) -> None:
        self.owner._record(request, f"error {rule.status} {rule.code}")
        message = ERROR_MESSAGES.get(rule.code, "Injected fault")
        payload = ERROR_TEMPLATE.format(code=rule.code, message=message, extra=rule.extra_xml).encode()
        self.send_response(rule.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout turns close() into a TCP RST.
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def summarize(entries: Iterable[LoggedRequest]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        label = f"{entry.request.op} {entry.outcome.split(' ')[0]}"
        counts[label] = counts.get(label, 0) + 1
    return counts
