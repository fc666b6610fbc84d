"""The benchmark's smoke mode (`bench/run.py --smoke`) runs end to end, so `make bench` cannot rot.

One short round: the upstream direct, the gateway (1 worker) and the Python ceiling, every scenario,
the streaming RSS check and the refresh burst. Without wrk or nginx it falls back to the Python load
generator and upstream in bench/ (nothing is installed by the test). Output goes to a temp directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_a_results_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = (tmp_path / "RESULTS.md").read_text()
    for heading in (
        "## Signed-in GET (small body)",
        "## Signed-out API call (401)",
        "## Handshake-needed document request (307)",
        "## Signed-in 1 MiB download",
        "## Targets (gateway with 1 worker, same run)",
    ):
        assert heading in results
    gateway_rows = re.findall(r"^\| gateway serve, 1 worker \(granian\) \| ([\d,]+) \|", results, re.MULTILINE)
    assert len(gateway_rows) == 4, results
    assert all(int(rate.replace(",", "")) > 0 for rate in gateway_rows)
    assert re.search(r"^\| Python ceiling: .* \| [\d,]+ \|", results, re.MULTILINE)
    assert "1 Backend API refresh call(s); answers {'200': 50}" in results
    assert "| one Backend API refresh call for 50 concurrent expired requests | yes |" in results
