"""What the gateway tells its operator: Prometheus metrics, one JSON access-log line a request, request ids.

A raw ASGI wrapper around the whole Litestar app (gateway endpoints and the gate alike). Per request it
reads the clock twice, observes one histogram, bumps one counter and, when access logging is on, builds
one JSON line from a fixed template (`access_line`) and hands it to `AccessLog`. What it knows about
the decision comes from the `RequestRecord` the gate leaves on the scope (`record.py`).

`AccessLog` writes the lines where the `gateway.access` logger would, without a `LogRecord` per
request when it can: if every handler that logger reaches is a plain `StreamHandler`/`FileHandler`
writing the bare message (what `gateway serve` sets up: stdout, `%(message)s`), lines are buffered and
written to those handlers' streams in batches (every 50 ms, every 128 lines, at lifespan shutdown after
the drain and at exit), in order, under each handler's lock. Any other set-up (filters, formatters,
other handler types: an operator's `logging` configuration) gets one `logging` call per line as
before. The configuration is looked at again once a second.

Never logged: the query string (it carries `__clerk_handshake`, `__clerk_db_jwt`), headers, cookies,
tokens. The path, the decision, Clerk's reason and the user id are.

The same wrapper refuses new requests once shutdown has begun (`EdgeRuntime.drain`) and counts the
ones in flight, so the lifespan can wait for them.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import logging
import os
import re
import sys
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.asgi_types import Receive, Scope, Send
from gateway.edge import answers
from gateway.edge.live import Live, Serving
from gateway.edge.paths import AmbiguousPath, canonical_path
from gateway.edge.record import RECORD_KEY, REQUEST_ID, RequestRecord, RouteClass, stamp, stamping
from gateway.edge.runtime import EdgeRuntime
from gateway.shared.feed import RedisFeed

access_logger = logging.getLogger("gateway.access")

METRICS_PATH = "/__gateway/metrics"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_GATEWAY_PREFIX = "/__gateway/"
SERVING_KEY = "gateway.serving"
"""The scope's `Serving`: the runtime and gate the request started on."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class _Tally(Collector):
    """A counter family kept as a plain dict and turned into Prometheus samples at scrape time.

    prometheus_client's own `Counter` takes a lock on every `inc()`; here one event-loop thread
    writes, so the hot path pays a dict update and nothing else.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.counts: dict[tuple[str, ...], int] = {}

    def inc(self, *values: str) -> None:
        counts = self.counts
        counts[values] = counts.get(values, 0) + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, count in sorted(self.counts.items()):
            family.add_metric(list(values), count)
        if not self.labels and not self.counts:
            family.add_metric([], 0)
        yield family


class _Histogram(Collector):
    """A histogram family as per-bucket counts (cumulated at scrape time), same reasons as `_Tally`."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.series: dict[tuple[str, ...], list[float]] = {}  # per label values: bucket counts…, +Inf, sum

    def observe(self, seconds: float, *values: str) -> None:
        series = self.series.get(values)
        if series is None:
            series = self.series[values] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        series[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [*(repr(float(bound)) for bound in LATENCY_BUCKETS), "+Inf"]
        for values, series in sorted(self.series.items()):
            cumulative = list(accumulate(series[:-1]))
            family.add_metric(list(values), list(zip(bounds, cumulative, strict=True)), series[-1])
        yield family


class GatewayMetrics:
    """The metrics of one app instance, in their own registry (no process-global default registry)."""

    def __init__(self, live: Live) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = _Tally(
            "gateway_requests",
            "Requests answered, by app, route class, Clerk decision status, reason and HTTP status class.",
            ["app", "route_class", "decision", "reason", "status"],
        )
        self.latency = _Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to the end of the response, by app and route class.",
            ["app", "route_class"],
        )
        self.upstream_latency = _Histogram(
            "gateway_upstream_duration_seconds", "Time until the app's response headers arrived."
        )
        self.upstream_errors = _Tally(
            "gateway_upstream_errors",
            "Requests the app failed: unreachable or invalid (502), too slow (504), broken off mid-body (aborted).",
            ["kind"],
        )
        self.handshakes = _Tally("gateway_handshakes", "Handshake redirects sent, by Clerk's reason.", ["reason"])
        self.redirect_loops = _Tally(
            "gateway_redirect_loops", "Redirect loops stopped with an explaining page, by likely cause.", ["cause"]
        )
        self.refresh_failures = _Tally(
            "gateway_session_refresh_failures",
            "Expired session tokens that could not be refreshed, by Clerk's reason.",
            ["reason"],
        )
        for collector in (
            self.requests,
            self.latency,
            self.upstream_latency,
            self.upstream_errors,
            self.handshakes,
            self.redirect_loops,
            self.refresh_failures,
            _RuntimeCollector(live),
        ):
            self.registry.register(collector)

    def observe(self, record: RequestRecord, status: int, seconds: float) -> None:
        route_class = record.route_class
        reason = record.reason
        decision = record.decision
        app = record.app or "none"
        self.requests.inc(
            app, route_class, decision or "none", reason or "none", _STATUS_CLASSES.get(status // 100, "0")
        )
        self.latency.observe(seconds, app, route_class)
        if record.upstream_seconds is not None:
            self.upstream_latency.observe(record.upstream_seconds)
        if record.upstream_error is not None:
            self.upstream_errors.inc("timeout" if status == 504 else "unreachable" if status == 502 else "aborted")
        if record.loop is not None:
            self.redirect_loops.inc(record.loop)
        if decision == "handshake":
            self.handshakes.inc(reason or "none")
        elif reason.startswith("session-token-expired-refresh-") and "non-eligible" not in reason:
            self.refresh_failures.inc(reason)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _RuntimeCollector(Collector):
    """Counters the Clerk clients already keep (JWKS cache, Backend API), read at scrape time from the
    live runtime, and which configuration is live (`gateway_config_info`, reloads by result)."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        live = self.live
        runtime = live.current.runtime
        info = GaugeMetricFamily(
            "gateway_config_info", "The configuration being served: the sha256 of its file.", labels=["sha256"]
        )
        info.add_metric([live.current.sha256], 1)
        yield info
        reloads = CounterMetricFamily(
            "gateway_config_reloads", "Configuration reloads (SIGHUP), by result: applied, refused, failed.",
            labels=["result"],
        )  # fmt: skip
        for result in ("applied", "refused", "failed"):
            reloads.add_metric([result], live.reloads[result])
        yield reloads
        authenticator = runtime.authenticator
        jwks = authenticator.jwks if authenticator is not None else None
        backend = authenticator.backend if authenticator is not None else None
        yield CounterMetricFamily(
            "gateway_jwks_fetches", "JWKS fetches started (retries inside one fetch not counted).",
            value=jwks.fetch_count if jwks else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "gateway_jwks_fetch_failures", "JWKS fetches that ended without a new key set.",
            value=jwks.failure_count if jwks else 0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "gateway_jwks_keys", "Verification keys loaded (0: tokens cannot be verified).",
            value=len(jwks.current) if jwks else int(runtime.keys_available),
        )  # fmt: skip
        yield CounterMetricFamily(
            "gateway_session_refreshes", "Session refresh calls made to the Backend API (shared calls counted once).",
            value=backend.refresh_calls_started if backend else 0,
        )  # fmt: skip
        gaps = CounterMetricFamily(
            "gateway_identity_lookup_gaps",
            "Requests whose identity headers lacked a user or organization the Backend API could not give "
            "(they got what the token alone gives).",
            labels=["kind"],
        )
        lookups = runtime.identity_lookups
        for kind, count in (lookups.gaps if lookups is not None else {"user": 0, "organization": 0}).items():
            gaps.add_metric([kind], count)
        yield gaps
        yield GaugeMetricFamily("gateway_requests_in_flight", "HTTP requests being answered.", value=live.in_flight)
        yield from _redis_metrics(runtime)


def _redis_metrics(runtime: EdgeRuntime) -> Iterator[Metric]:
    """Only with `GATEWAY_REDIS_URL`: a gateway without Redis has no Redis to be down."""
    connection = runtime.redis
    if connection is None:
        return
    yield GaugeMetricFamily(
        "gateway_redis_up", "1 while Redis answers; 0: each replica serves from its own state and reconnects.",
        value=int(connection.up),
    )  # fmt: skip
    failures = CounterMetricFamily(
        "gateway_redis_failures", "Redis commands that failed, by operation (ping, feed, dedupe, refresh).",
        labels=["operation"],
    )  # fmt: skip
    for operation, count in sorted(connection.failures.items()):
        failures.add_metric([operation], count)
    yield failures
    feed = runtime.revocations.feed
    yield CounterMetricFamily(
        "gateway_revocation_feed_synchronisations",
        "Times the revocations were loaded from Redis and written back (start, and every reconnection).",
        value=feed.synchronised if isinstance(feed, RedisFeed) else 0,
    )
    shared = runtime.shared_refreshes
    yield CounterMetricFamily(
        "gateway_session_refreshes_shared", "Session refreshes answered by another replica's call (through Redis).",
        value=shared.answers_shared if shared is not None else 0,
    )  # fmt: skip


_quote = json.encoder.encode_basestring_ascii  # what json.dumps uses: the same escapes, byte for byte


def access_line(
    when: str,
    request_id: str,
    method: str,
    path: str,
    status: int,
    route: str,
    app: str | None,
    decision: str | None,
    reason: str | None,
    user_id: str | None,
    upstream_seconds: float | None,
    upstream_error: str | None,
    total_seconds: float,
) -> str:
    """One access-log line: `json.dumps` of the same dict with `separators=(",", ":")`, character for
    character (the tests compare), from a fixed template. Every text field is escaped as `json.dumps`
    escapes it (quotes, backslashes, control characters, non-ASCII, lone surrogates); `when` is the
    gateway's own time stamp."""
    return (
        f'{{"time":"{when}","request_id":{_quote(request_id)},"method":{_quote(method)},"path":{_quote(path)},'
        f'"status":{status:d},"route":{_quote(route)},"app":{"null" if app is None else _quote(app)},'
        f'"decision":{"null" if decision is None else _quote(decision)},'
        f'"reason":{"null" if reason is None else _quote(reason)},'
        f'"user_id":{"null" if user_id is None else _quote(user_id)},'
        f'"upstream_seconds":{"null" if upstream_seconds is None else repr(upstream_seconds)},'
        f'"upstream_error":{"null" if upstream_error is None else _quote(upstream_error)},'
        f'"total_seconds":{total_seconds!r}}}'
    )


_PROBE = logging.LogRecord("gateway.access", logging.INFO, __file__, 0, "probe %s", ("line",), None)
_PLAIN_HANDLERS = (logging.StreamHandler, logging.FileHandler)  # exactly these (no rotation, no sockets)
_open_logs: weakref.WeakSet[AccessLog] = weakref.WeakSet()


def _plain_handlers(logger: logging.Logger) -> tuple[logging.StreamHandler[Any], ...] | None:
    """The handlers `logger.info(line)` would reach, if every one of them writes the bare line plus a
    newline to an open stream (then lines can go to their streams directly); None if any does more."""
    if logger.filters:
        return None
    found: list[logging.StreamHandler[Any]] = []
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler.level > logging.INFO:
                continue  # it would not write an INFO line
            if (
                type(handler) not in _PLAIN_HANDLERS
                or handler.filters
                or getattr(handler, "stream", None) is None
                or getattr(handler, "terminator", None) != "\n"
                or handler.format(_PROBE) != "probe line"
            ):
                return None
            assert isinstance(handler, logging.StreamHandler)
            found.append(handler)
        current = current.parent if current.propagate else None
    return tuple(found)  # empty: `logging` would drop INFO lines too (its last resort writes warnings only)


class AccessLog:
    """The access lines of one app instance, to the `gateway.access` logger's handlers (module docstring).

    Used from the event loop's thread only. `flush()` writes what is buffered; a graceful shutdown
    flushes after the drain, and the process flushes at exit.
    """

    FLUSH_SECONDS: Final = 0.05
    BATCH_LINES: Final = 128

    def __init__(self, logger: logging.Logger = access_logger) -> None:
        self.logger = logger
        self.active = True
        """False while `logger` would write no INFO line: the line is not even built."""
        self._direct: tuple[logging.StreamHandler[Any], ...] | None = None
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._second_text = ""
        self.refresh()
        _open_logs.add(self)

    def refresh(self) -> None:
        """Look at the logging configuration again (once a second, from `stamp`)."""
        direct = _plain_handlers(self.logger)
        if direct != self._direct:
            self.flush()  # what was buffered goes where it was meant to, before anything new
            self._direct = direct
        self.active = self.logger.isEnabledFor(logging.INFO) and direct != ()

    def stamp(self, now: float) -> str | None:
        """`now` (`time.time()`) as `datetime.now(UTC).isoformat(timespec="milliseconds")` writes it (the
        date and time formatted once a second, when the configuration is looked at again), or None
        while no line would be written."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self.refresh()
        if not self.active:
            return None
        return f"{self._second_text}.{int((now - second) * 1000):03d}+00:00"

    def write(self, line: str) -> None:
        if self._direct is None:
            self.logger.info("%s", line)
            return
        lines = self._lines
        lines.append(line)
        if len(lines) >= self.BATCH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self._flush_on_time)
            except RuntimeError:  # no event loop (a direct call): nothing would flush later
                self.flush()

    def _flush_on_time(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines = self._lines
        if not lines:
            return
        self._lines = []
        text = "\n".join(lines) + "\n"
        for handler in self._direct or ():
            handler.acquire()
            try:
                handler.stream.write(text)
                handler.flush()
            except Exception:
                handler.handleError(logging.LogRecord(self.logger.name, logging.INFO, __file__, 0, "%d access-log "
                                                      "lines", (len(lines),), None))  # fmt: skip
            finally:
                handler.release()


@atexit.register
def _flush_at_exit() -> None:
    for log in list(_open_logs):
        log.flush()


def configure_access_log() -> None:
    """For `gateway serve` workers: access lines go to stdout, one JSON object a line."""
    if access_logger.handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


class Observability:
    """The ASGI wrapper: request id, drain refusal, in-flight count, metrics, access log."""

    def __init__(self, app: Any, live: Live, *, access_log: bool = True) -> None:
        self.app = app
        self.live = live
        self.metrics = GatewayMetrics(live)
        self.access_log = access_log
        self.log = AccessLog()
        # Request ids: a random prefix per app instance (so per worker) and a counter. Unique is all an
        # id must be; `secrets` would cost an `os.urandom` system call per request.
        self._id_prefix = os.urandom(4).hex()
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            self.log.flush()
            return
        started = time.perf_counter()
        serving: Serving = self.live.current  # the request's, whatever a reload swaps meanwhile
        scope[SERVING_KEY] = serving
        runtime = serving.runtime
        request_id = self._request_id(scope, runtime)
        if kind == "http" and scope["path"] == METRICS_PATH and _spells_metrics(scope):
            await answers.send_answer(
                send, 200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"), answers.NO_STORE],
                self.metrics.exposition(),
            )  # fmt: skip
            return
        if kind == "http" and not scope["path"].startswith(_GATEWAY_PREFIX):
            # The gate's requests (most of them): it stamps its answers itself (`record.stamp`), so the
            # hot path pays no send wrapper.
            record = scope[RECORD_KEY] = RequestRecord("proxy", request_id)
        else:
            route_class: RouteClass = "gateway" if scope["path"].startswith(_GATEWAY_PREFIX) else "proxy"
            record = scope[RECORD_KEY] = RequestRecord(route_class)
            send = stamping(send, record, request_id)
        if kind != "http":
            await self.app(scope, receive, send)
        elif runtime.draining:
            await answers.error(
                send, 503, "shutting_down", "The gateway is shutting down; try again.",
                headers=stamp(record, [(b"connection", b"close"), (b"retry-after", b"1")], 503),
            )  # fmt: skip
        else:
            runtime.request_started()
            try:
                await self.app(scope, receive, send)
            finally:
                runtime.request_finished()
        status = record.status
        seconds = time.perf_counter() - started
        self.metrics.observe(record, status, seconds)
        log = self.log
        if self.access_log and (when := log.stamp(time.time())) is not None:
            log.write(
                access_line(
                    when,
                    request_id.decode("ascii"),
                    scope.get("method", "GET") if kind == "http" else "WEBSOCKET",
                    scope["path"],
                    status,
                    record.route_class,
                    record.app or None,
                    record.decision or None,
                    record.reason or None,
                    record.user_id,
                    _rounded(record.upstream_seconds),
                    record.upstream_error,
                    round(seconds, 6),
                )
            )

    def _lifespan_send(self, send: Send) -> Send:
        """The lifespan's send: the lines of the drained requests are written before shutdown completes."""
        log = self.log

        async def lifespan_send(message: dict[str, Any]) -> None:
            if message["type"].startswith("lifespan.shutdown"):
                log.flush()
            await send(message)

        return lifespan_send

    def _request_id(self, scope: Scope, runtime: EdgeRuntime) -> bytes:
        """The trusted proxy's `X-Request-Id`, else a new one; the app receives it as `X-Request-Id`."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        incoming: bytes | None = None
        for name, value in headers:
            if name == REQUEST_ID:
                incoming = value
                break
        if incoming is not None and _VALID_REQUEST_ID.fullmatch(incoming):
            client = scope.get("client")
            if client and runtime.forwarded.is_trusted(str(client[0])):
                return incoming
        request_id = f"{self._id_prefix}{next(self._id_counter):08x}".encode("ascii")
        if incoming is None:
            scope["headers"] = [*headers, (REQUEST_ID, request_id)]
        else:
            scope["headers"] = [*(pair for pair in headers if pair[0] != REQUEST_ID), (REQUEST_ID, request_id)]
        return request_id


def _spells_metrics(scope: Scope) -> bool:
    """The request's canonical path is the metrics path, as the other endpoints are routed: the server's
    decoded `path` also reads `/__gateway%2Fmetrics` so, which the canonical path rule refuses."""
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is None:
        return True
    try:
        return canonical_path(raw_path.split(b"?", 1)[0]).judged == METRICS_PATH
    except AmbiguousPath:
        return False


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)
