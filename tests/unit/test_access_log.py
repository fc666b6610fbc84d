"""The access log's line and its writer (`gateway.edge.observability`).

The line is built from a fixed template, not `json.dumps`: it must still be exactly what `json.dumps`
gave for the same fields, whatever the path, user id or upstream error hold (quotes, backslashes,
control characters, non-ASCII, lone surrogates). The writer skips `logging` for plain stream handlers:
lines must still reach those streams, in order, by the next flush (timer, batch size, lifespan
shutdown), and any other logging set-up must get its records as before.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clerk.keys import make_publishable_key
from gateway.edge.live import Live
from gateway.edge.observability import AccessLog, Observability, access_line
from gateway.edge.runtime import EdgeRuntime
from gateway.settings import load_settings

HOSTILE = ['"', "\\", '\\"', "\x00", "\x1f", "\x7f", "\n\r\t\b\f", "\u2028\u2029", "é", "日本", "\U0001f600",
           "\ud800", "\udfff", "\udfff\ud800", "</script>", "%22", "{}", "null", ""]  # fmt: skip
FIELDS = ("time", "request_id", "method", "path", "status", "route", "app", "decision", "reason", "user_id",
          "upstream_seconds", "upstream_error", "total_seconds")  # fmt: skip
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)


def dumped(*values: Any) -> str:
    """What the access line was before: `json.dumps` of the dict."""
    return json.dumps(dict(zip(FIELDS, values, strict=True)), separators=(",", ":"))


@pytest.mark.parametrize("text", HOSTILE)
def test_the_line_is_what_json_dumps_wrote_for_hostile_text(text: str) -> None:
    values = ("2026-01-02T03:04:05.006+00:00", "ab12cd3400000001", text, f"/p{text}", 200, "proxy", text, "signed-in",
              text or None, text, 0.000123, text, 1.5)  # fmt: skip
    line = access_line(*values)  # type: ignore[arg-type]
    assert line == dumped(*values)
    assert line.isascii() and "\n" not in line
    parsed = json.loads(line)
    assert list(parsed) == list(FIELDS) and parsed["path"] == f"/p{text}" and parsed["user_id"] == text


@given(
    path=ANY_TEXT, method=ANY_TEXT, user_id=st.none() | ANY_TEXT, reason=st.none() | ANY_TEXT,
    error=st.none() | ANY_TEXT, status=st.integers(0, 999),
    upstream=st.none() | st.floats(0, 1e6, allow_nan=False), total=st.floats(0, 1e6, allow_nan=False),
)  # fmt: skip
def test_the_line_is_what_json_dumps_wrote_for_any_text(
    path: str, method: str, user_id: str | None, reason: str | None, error: str | None, status: int,
    upstream: float | None, total: float,
) -> None:  # fmt: skip
    values = ("2026-01-02T03:04:05.006+00:00", "lb-42", method, path, status, "frontend_api", None, None, reason,
              user_id, upstream, error, total)  # fmt: skip
    assert access_line(*values) == dumped(*values)  # type: ignore[arg-type]


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger set up as `gateway serve` sets up `gateway.access` (bare message, own stream)."""
    logger = logging.getLogger("gateway.test-access")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.handlers = []


def access_log(logger: logging.Logger) -> AccessLog:
    """An `AccessLog` on `logger`, without the capture handler pytest adds to non-propagating loggers
    when a test starts (it is no plain stream handler)."""
    logger.handlers = [handler for handler in logger.handlers if type(handler).__name__ != "LogCaptureHandler"]
    return AccessLog(logger)


def test_time_stamps_are_the_isoformat_of_the_time(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    log = access_log(stream_logger[0])
    for now in (1_800_000_000.0, 1_800_000_000.0009, 1_800_000_000.5, 1_800_000_000.999999, 1_800_000_001.25,
                1_700_000_123.0456):  # fmt: skip
        expected = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        assert log.stamp(now) == expected, now


async def test_lines_go_to_a_plain_stream_in_order_by_the_next_flush(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    log = access_log(logger)
    for number in range(5):
        log.write(f'{{"n":{number}}}')
    assert stream.getvalue() == ""  # buffered: no write system call per line
    await asyncio.sleep(log.FLUSH_SECONDS * 3)
    assert stream.getvalue() == "".join(f'{{"n":{number}}}\n' for number in range(5))
    for number in range(5, 5 + log.BATCH_LINES):  # a full batch is written at once
        log.write(f'{{"n":{number}}}')
    assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == list(range(5 + log.BATCH_LINES))
    log.write('{"n":"last"}')
    log.flush()
    assert stream.getvalue().endswith('{"n":"last"}\n')


def test_without_an_event_loop_each_line_is_written_at_once(stream_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = stream_logger
    access_log(logger).write("one")
    assert stream.getvalue() == "one\n"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("setup", ["handler of its own", "timestamped formatter", "filter", "parent's handler"])
def test_any_other_logging_set_up_gets_one_record_a_line(
    stream_logger: tuple[logging.Logger, io.StringIO], setup: str
) -> None:
    logger, stream = stream_logger
    handler = logger.handlers[0]
    collect = _Collect()
    if setup == "handler of its own":
        logger.addHandler(collect)
    elif setup == "timestamped formatter":
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(collect)
    elif setup == "filter":
        handler.addFilter(lambda record: "secret" not in record.getMessage())
        logger.addHandler(collect)
    else:
        logger.propagate = True
        logging.getLogger("gateway").addHandler(collect)
    try:
        log = access_log(logger)
        log.write('{"path":"/a"}')
        log.write('{"path":"/secret"}')
        assert [record.getMessage() for record in collect.records] == ['{"path":"/a"}', '{"path":"/secret"}']
        assert all(record.name == logger.name and record.levelno == logging.INFO for record in collect.records)
    finally:
        logging.getLogger("gateway").removeHandler(collect)
    if setup == "filter":
        assert stream.getvalue() == '{"path":"/a"}\n'


async def test_a_changed_set_up_is_seen_within_a_second_and_nothing_buffered_is_lost(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    log = access_log(logger)
    assert log.stamp(1_800_000_000.1) is not None
    log.write("buffered")
    collect = _Collect()
    logger.addHandler(collect)
    assert log.stamp(1_800_000_000.9) is not None  # same second: not looked at yet
    assert log.stamp(1_800_000_001.0) is not None  # next second: the buffered line is written first
    assert stream.getvalue() == "buffered\n"
    log.write("through logging")
    assert [record.getMessage() for record in collect.records] == ["through logging"]
    logger.setLevel(logging.WARNING)
    assert log.stamp(1_800_000_002.0) is None  # silenced: no line is even built
    logger.setLevel(logging.INFO)
    assert log.stamp(1_800_000_003.0) is not None
    logger.removeHandler(collect)


def _runtime() -> EdgeRuntime:
    return EdgeRuntime(load_settings(None, {
        "CLERK_PUBLISHABLE_KEY": make_publishable_key("clerk.example.test", "production"),
        "CLERK_SECRET_KEY": "sk_test_access_log",
        "GATEWAY_UPSTREAM": "http://127.0.0.1:9",
    }, require_upstream=True))  # fmt: skip


async def test_lines_of_drained_requests_are_written_before_the_lifespan_shutdown_completes(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    written_at_shutdown: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            assert (await receive())["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})
            assert (await receive())["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    observed = Observability(app, Live(_runtime()))
    observed.log = access_log(logger)
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            written_at_shutdown.append(stream.getvalue())

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def ignore(message: dict[str, Any]) -> None:
        pass

    running = asyncio.create_task(observed({"type": "lifespan"}, lifespan.get, lifespan_send))
    paths = ["/a", '/quote"and\\back', "/ünïcode", "/ctl\x01"]
    for path in paths:
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "headers": [],
                 "query_string": b"", "client": ("127.0.0.1", 1)}  # fmt: skip
        await observed(scope, no_body, ignore)
    assert stream.getvalue() == ""  # still buffered
    await lifespan.put({"type": "lifespan.shutdown"})
    await running
    lines = [json.loads(line) for line in written_at_shutdown[0].splitlines()]
    assert [line["path"] for line in lines] == paths
    assert all(list(line) == list(FIELDS) and line["method"] == "GET" for line in lines)
