"""Agent presets: built-ins, overrides from config/agents.toml, RegistryError naming presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tundra.agents.errors import RegistryError
from tundra.agents.registry import load_registry, preset_infos
from tundra.agents.supervisor import StuckDetector


def test_builtins_exist_and_render_prompt_as_one_argument() -> None:
    reg = load_registry(None)
    assert reg.names() == ["claude", "codex", "gemini", "opencode", "shell"]
    argv = reg.get("claude").render("fix the bug; rm -rf /")
    assert argv[:3] == ["claude", "-p", "fix the bug; rm -rf /"]
    assert "stream-json" in argv and "bypassPermissions" in argv
    assert reg.get("shell").render("echo hi") == ["bash", "-lc", "echo hi"]


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(RegistryError) as ei:
        load_registry(None).get("nope")
    assert str(ei.value) == (
        "unknown agent preset: nope (known presets: claude, codex, gemini, opencode, shell)"
    )
    assert ei.value.code == "agent.registry"


def test_overrides_merge_field_by_field_and_add_presets(tmp_path: Path) -> None:
    f = tmp_path / "agents.toml"
    f.write_text(
        """
[presets.claude]
base_url = "http://127.0.0.1:9999"
[presets.mine]
command = ["my-agent", "--do", "{prompt}"]
stuck_policy = "restart"
"""
    )
    reg = load_registry(f)
    claude = reg.get("claude")
    assert claude.command[0] == "claude" and claude.source == str(f)
    assert claude.environment()["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9999"
    assert reg.get("mine").render("x") == ["my-agent", "--do", "x"]
    infos = {i.name: i for i in preset_infos(reg)}
    assert infos["mine"].available is False and infos["shell"].available is True


@pytest.mark.parametrize(
    "body",
    [
        "[presets.bad]\ncommand = []\n",
        '[presets.bad]\ncommand = ["x"]\nstuck_policy = "explode"\n',
        '[presets.bad]\ncommand = ["x"]\nunknown_key = 1\n',
        '[presets]\nbad = "not a table"\n',
    ],
)
def test_invalid_preset_is_a_registry_error_naming_it(tmp_path: Path, body: str) -> None:
    f = tmp_path / "agents.toml"
    f.write_text(body)
    with pytest.raises(
        RegistryError, match=r"invalid agent preset bad in .*known presets: bad, claude"
    ):
        load_registry(f)


def test_stuck_detector_needs_quiet_and_three_identical_windows() -> None:
    d = StuckDetector(300)
    assert d.interval == 100
    assert not d.observe(b"a", quiet_for=400)
    assert not d.observe(b"a", quiet_for=400)
    assert d.observe(b"a", quiet_for=400)
    d.reset()
    for tail in (b"a", b"a", b"b"):
        assert not d.observe(tail, quiet_for=400)
    for _ in range(3):
        assert not d.observe(b"b", quiet_for=10)
