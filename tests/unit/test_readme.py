"""The README is the newcomer's contract: its configuration reference and commands stay true."""

from __future__ import annotations

from pathlib import Path

from gateway.settings_reference import with_reference

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_configuration_reference_matches_the_settings_model() -> None:
    assert with_reference(README) == README, "run: python -m gateway.settings_reference README.md"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    assert "make test" in README
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_readme_demo_command_exists_in_the_makefile() -> None:
    assert "make demo" in README
    assert "\ndemo:" in (REPO / "Makefile").read_text()
