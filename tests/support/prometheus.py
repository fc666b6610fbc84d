"""Debian's Prometheus, started for a test under a path prefix with its storage in a temporary directory.

`make test` installs the package when it may (`system-deps`); without the binary the tests that need it
are skipped with a loud reason.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import running
from tests.support.upstream import unused_port

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def prometheus_or_skip() -> str:
    if PROMETHEUS is None:
        pytest.skip("NO PROMETHEUS: Debian's prometheus is not installed (make test installs it as root); "
                    "the Prometheus-behind-the-gateway tests did not run")
    return PROMETHEUS


@contextlib.contextmanager
def running_prometheus(data_dir: Path, prefix: str, external_url: str) -> Iterator[str]:
    """Prometheus serving every path under `prefix` (its UI links carry it), scraping itself each second.

    Yields its loopback base URL (without the prefix); ready once `{prefix}/-/ready` answers 200."""
    binary = prometheus_or_skip()
    port = unused_port()
    config = data_dir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: self, metrics_path: {prefix}/metrics, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
    )
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", f"--web.route-prefix={prefix}",
               f"--web.external-url={external_url}"]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}{prefix}/-/ready", data_dir / "prometheus.log"):
        yield url
