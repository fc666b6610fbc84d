"""The Django project of `tests/apps/django_site/`, migrated into a temporary SQLite file and served by uvicorn."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import running
from tests.support.upstream import unused_port

REPO = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = "tests.apps.django_site.settings"
DATABASE = "db.sqlite3"  # in DJANGO_DATA_DIR (tests/apps/django_site/settings.py)


def django_environment(data_dir: Path) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CLERK_", "GATEWAY_"))},
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "DJANGO_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(REPO),
    }


def manage(data_dir: Path, *arguments: str) -> str:
    """`django-admin ARGUMENTS` against the project and its database in `data_dir`; its output."""
    done = subprocess.run([sys.executable, "-m", "django", *arguments], env=django_environment(data_dir),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def migrated_database(data_dir: Path) -> Path:
    """A database with every migration applied (`migrate`), to copy for each server."""
    manage(data_dir, "migrate", "--no-input")
    return data_dir / DATABASE


@contextlib.contextmanager
def running_django(data_dir: Path, database: Path) -> Iterator[str]:
    """Serve the project with uvicorn on a loopback port, on a copy of `database`; yields its base URL."""
    shutil.copyfile(database, data_dir / DATABASE)
    port = unused_port()
    command = [sys.executable, "-m", "uvicorn", "tests.apps.django_site.asgi:application",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "off"]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/healthz", data_dir / "uvicorn.log", env=django_environment(data_dir), cwd=REPO):
        yield url


def django_users(data_dir: Path) -> list[dict[str, object]]:
    """Every user in the project's database (username, email, staff, superuser), by `dumpdata`."""
    dumped = json.loads(manage(data_dir, "dumpdata", "auth.user"))
    return [{key: entry["fields"][key] for key in ("username", "email", "is_staff", "is_superuser")}
            for entry in dumped]
