"""`GATEWAY_REDIS_URL`: what is accepted, what check-config refuses (naming the setting), what it shows."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, load_settings
from gateway.settings.values import RedisUrl
from gateway.settings_command import summary_lines

BASE = {"CLERK_PUBLISHABLE_KEY": "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k", "CLERK_SECRET_KEY": "sk_test_abcdefghijkl"}

ACCEPTED = {
    "plain": "redis://redis:6379/0",
    "no port, no database": "redis://redis",
    "password": "redis://:s3cret@redis:6379/2",
    "user and password": "redis://gateway:s3cret@redis.internal:6380",
    "tls": "rediss://redis.example.com:6379/0",
    "unix socket": "unix:///var/run/redis/redis.sock",
    "unix socket with database": "unix:///var/run/redis/redis.sock?db=1",
}

REFUSED = {
    "http": ("http://redis:6379", "expected a redis://, rediss:// or unix:// URL"),
    "no scheme": ("redis.internal:6379", "expected a redis://, rediss:// or unix:// URL"),
    "no slashes": ("redis:6379", "expected a host"),
    "no host": ("redis:///0", "expected a host"),
    "bad port": ("redis://redis:port/0", "not a valid URL"),
    "database not a number": ("redis://redis:6379/cache", "the path names the database and must be a number"),
    "relative unix path": ("unix://redis.sock", "expected unix:///absolute/path"),
}


@pytest.mark.parametrize("url", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_redis_urls_redis_py_understands_are_accepted(url: str) -> None:
    settings = load_settings(None, {**BASE, "GATEWAY_REDIS_URL": url})
    assert settings.gateway.redis_url == RedisUrl(url)


@pytest.mark.parametrize(("url", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_redis_url_is_one_problem_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**BASE, "GATEWAY_REDIS_URL": url})
    assert len(refused.value.problems) == 1
    problem = refused.value.problems[0]
    assert problem.startswith("GATEWAY_REDIS_URL: ") and message in problem, problem


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(None, {**BASE, "GATEWAY_REDIS_URL": "redis://:hunter2@redis:6379/cache"})
    assert "hunter2" not in refused.value.problems[0]


def test_without_redis_every_process_keeps_its_own_state() -> None:
    assert load_settings(None, BASE).gateway.redis_url is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://gateway:hunter2@redis:6379/0", "redis://gateway:***@redis:6379/0"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
    ],
)
def test_check_config_shows_the_redis_url_with_its_password_masked(url: str, shown: str) -> None:
    lines = summary_lines(load_settings(None, {**BASE, "GATEWAY_REDIS_URL": url}))
    assert any(line.split(":", 1)[0].strip() == "redis" and line.endswith(shown) for line in lines), lines
    assert all("hunter2" not in line for line in lines)
    assert "hunter2" not in repr(RedisUrl(url))
