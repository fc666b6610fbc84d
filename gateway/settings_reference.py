"""The README's configuration reference, generated from the settings table so it cannot drift."""

from __future__ import annotations

from gateway.settings import SettingSpec, setting_specs

SECTION_TITLES = {"clerk": "Clerk (`[clerk]`)", "gateway": "Gateway (`[gateway]`)"}


def render_reference_markdown() -> str:
    """A Markdown table per section: setting, environment variable, default, meaning."""
    lines = [
        "## Configuration reference",
        "",
        "Settings come from a TOML file (`gateway <command> --config FILE`) and the environment; the "
        "environment wins, and an empty variable counts as unset. `gateway check-config` lists every problem.",
    ]
    specs = setting_specs()
    for section, title in SECTION_TITLES.items():
        lines += ["", f"### {title}", "", "| Setting | Environment variable | Default | Meaning |", "|---|---|---|---|"]
        lines += [_row(spec) for spec in specs if spec.section == section]
    return "\n".join(lines) + "\n"


def _row(spec: SettingSpec) -> str:
    cells = [f"`{spec.key}`", f"`{spec.env_var}`", _default_text(spec), spec.help]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _default_text(spec: SettingSpec) -> str:
    if spec.default_text is not None:
        return spec.default_text
    default = spec.default
    if default is None or default == ():
        return "—"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


START_MARKER = "<!-- reference:start -->"
END_MARKER = "<!-- reference:end -->"


def with_reference(readme: str) -> str:
    """The README text with the generated reference placed between its markers."""
    head, _, rest = readme.partition(START_MARKER)
    _, _, tail = rest.partition(END_MARKER)
    return f"{head}{START_MARKER}\n{render_reference_markdown()}{END_MARKER}{tail}"


if __name__ == "__main__":  # python -m gateway.settings_reference README.md  (rewrites the reference)
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    target.write_text(with_reference(target.read_text()))
