"""config.toml loading: defaults, precise errors, example, CLI exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest

from tundra.config import Config, ConfigError, load_config, parse_config
from tundra.config.example import render_example
from tundra.paths import check_socket_path, socket_path


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_missing_file_gives_seed_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "config.toml")
    assert cfg == Config()
    assert cfg.daemon.max_ptys == 10
    assert cfg.bridge.host == "127.0.0.1" and cfg.bridge.port == 3000
    assert cfg.dolt is None
    dolt = parse_config({"dolt": {}}).dolt
    assert dolt is not None
    assert (dolt.host, dolt.port, dolt.user, dolt.auto_commit, dolt.manage) == ("127.0.0.1", 3306, "root", False, False)


def test_wrong_type_names_file_field_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[dolt]\nport = "3306"\n'))
    assert e.value.message == 'config.toml: dolt.port: expected int, got str "3306"'
    assert e.value.code == "config.invalid"


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[general]\nproject_name = \"x\"\n\nport 3306\n"))
    assert e.value.message.startswith("config.toml:4: invalid TOML: ")


def test_range_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[dolt]\nport = 70000\n"))
    assert e.value.message == "config.toml: dolt.port: must be 1-65535, got 70000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[dolt]\nprot = 1\n", "config.toml: dolt.prot: unknown key (did you mean `port`?)"),
        ("[genral]\n", "config.toml: genral: unknown key (did you mean `general`?)"),
        ("[daemon]\nmax_pty = 3\n", "config.toml: daemon.max_pty: unknown key (did you mean `max_ptys`?)"),
    ],
)
def test_unknown_keys_suggest_the_closest(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert e.value.message == expected


def test_invalid_enum_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[general]\nenvironment = "prod"\n'))
    assert "general.environment: invalid value 'prod'" in e.value.message
    assert "'production'" in e.value.message


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path / "config.toml")
    (tmp_path / "c2.toml").write_bytes(b"[general]\nproject_name = \"\xff\"\n")
    with pytest.raises(ConfigError, match=r"c2.toml:2: invalid TOML: not UTF-8"):
        load_config(tmp_path / "c2.toml")


def test_example_has_every_key_and_parses_to_defaults() -> None:
    text = render_example()
    data = tomllib.loads(text)
    assert parse_config(data) == Config()
    info = msgspec.inspect.type_info(Config)
    for section in info.fields:
        if section.name == "dolt":
            assert "# [dolt]" in text
            continue
        sub = msgspec.inspect.type_info(type(getattr(Config(), section.name)))
        for f in sub.fields:  # type: ignore[attr-defined]
            assert f.name in data[section.name], f"{section.name}.{f.name} missing from example"


def test_socket_path_limit_is_a_config_error(tmp_path: Path) -> None:
    long = tmp_path / ("x" * 120) / "daemon.sock"
    with pytest.raises(ConfigError) as e:
        check_socket_path(long)
    assert str(long) in e.value.message
    assert socket_path(env={"TUNDRA_SOCKET": "/tmp/a.sock"}) == Path("/tmp/a.sock")
    assert socket_path(env={"TUNDRA_HOME": "/tmp/h"}) == Path("/tmp/h/run/daemon.sock")
    assert socket_path(env={"HOME": "/root", "RUNTIME_DIRECTORY": "/run/tundra"}) == Path("/run/tundra/daemon.sock")
    assert socket_path(env={"HOME": "/root", "XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/auto-tundra/daemon.sock")


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"TUNDRA_HOME": str(home), "PATH": "/usr/bin:/bin", "TUNDRA_SOCKET": str(home / "d.sock")}
    return subprocess.run([sys.executable, "-m", "tundra", *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_validate_exit_codes_and_json(tmp_path: Path) -> None:
    ok = run_cli("config", "validate", home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    write(tmp_path, '[dolt]\nport = "3306"\n')
    bad = run_cli("config", "validate", "--json", home=tmp_path)
    assert bad.returncode == 2
    doc = json.loads(bad.stdout)
    assert doc["valid"] is False
    assert doc["files"][0]["error"] == 'config.toml: dolt.port: expected int, got str "3306"'
    d = run_cli("daemon", "--validate-config", home=tmp_path)
    assert d.returncode == 2 and "dolt.port" in d.stdout
    assert "Traceback" not in d.stdout + d.stderr


def test_cli_init_then_show(tmp_path: Path) -> None:
    r = run_cli("config", "init", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "config.toml").stat().st_mode & 0o777 == 0o600
    again = run_cli("config", "init", home=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    show = run_cli("config", "show", "--json", home=tmp_path)
    assert show.returncode == 0
    assert json.loads(show.stdout)["daemon"]["max_ptys"] == 10
    assert run_cli("daemon", "--validate-config", home=tmp_path).returncode == 0
