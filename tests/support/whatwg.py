"""A second opinion on URL parsing: Node's `new URL()` (the WHATWG parser browsers implement).

One long-lived `node` process answers one JSON line per question. Tests that use it are skipped
where Node is not installed; our own parser (`gateway.clerk.urls`) is checked without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

_SCRIPT = r"""
const rl = require('readline').createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [text, base] = JSON.parse(line);
  let answer;
  try {
    const url = base === null ? new URL(text) : new URL(text, base);
    answer = { href: url.href, origin: url.origin, protocol: url.protocol };
  } catch (error) {
    answer = { error: String(error.code || error.message) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
"""


class WhatwgOracle:
    def __init__(self) -> None:
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise FileNotFoundError("node")
        self._process = subprocess.Popen(
            [node, "-e", _SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8"
        )

    def parse(self, text: str, base: str | None = None) -> dict[str, Any]:
        """`{"href", "origin", "protocol"}` of `new URL(text, base)`, or `{"error"}`."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps([text, base]) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=5)
