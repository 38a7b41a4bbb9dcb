"""`tundra diagnose`: the bundle has what a bug report needs and none of the planted secrets."""

from __future__ import annotations

import json
import os
import sys
import tarfile
from pathlib import Path

import trio

from tests.support import REPO, start_daemon

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-PLANTEDanthropic0123456789abcdef",
    # A profile's key variable with a name the generic patterns would not recognise.
    "ACME_LLM_CRED": "plantedAcmeCredential-777",
    "DB_PW": "plantedDbPassw0rd-555",
    "GITHUB_TOKEN": "ghp_PLANTEDgithubtoken0123456789",
}
BRIDGE_TOKEN = "plantedBridgeToken-9f8e7d6c5b4a"
URL_PASSWORD = "plantedUrlPassword42"
LOG_BEARER = "plantedBearerValueXYZ123456"


def _plant(home: Path) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[store]\npassword_env = "DB_PW"\n[bridge]\nport = 3999\n')
    (home / "config" / "api_profiles.json").write_text(
        json.dumps(
            {
                "profiles": [
                    {
                        "name": "acme",
                        "provider": "openai",
                        "base_url": "https://llm.acme.test/v1",
                        "api_key_env": "ACME_LLM_CRED",
                    },
                    {"name": "claude", "provider": "anthropic"},
                ]
            }
        )
    )
    (home / "config" / "harness.toml").write_text(
        f"# old note: dolt at mysql://root:{URL_PASSWORD}@127.0.0.1:3306/auto_tundra\n"
    )
    token = home / "bridge.token"
    token.write_text(BRIDGE_TOKEN + "\n")
    token.chmod(0o600)
    # An old log written before redaction existed (or by a careless plugin).
    (home / "logs" / "daemon.log.1").write_text(
        "2026-01-01T00:00:00.000Z ERROR tundra.intelligence: request failed "
        f"Authorization: Bearer {LOG_BEARER}\n"
        f"Traceback (most recent call last):\n  key={SECRETS['ANTHROPIC_API_KEY']}\n"
        f"2026-01-01T00:00:01.000Z  INFO tundra.bridge: token {BRIDGE_TOKEN} acme {SECRETS['ACME_LLM_CRED']}\n"
    )


def _members(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            if f is not None:
                out[m.name.split("/", 1)[1]] = f.read()
    return out


async def test_bundle_contains_no_planted_secret(short_dir: Path) -> None:
    base = short_dir
    home = base / "home"
    _plant(home)
    async with start_daemon(home, env=dict(SECRETS)) as d:
        env = {**d.env, **SECRETS, "PYTHONPATH": str(REPO)}
        out = base / "bundle.tar.gz"
        proc = await trio.run_process(
            [sys.executable, "-m", "tundra", "diagnose", "--output", str(out)],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert "[1/8] versions" in stderr and "[8/8]" in stderr  # progress display
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("redacted: ") and "ANTHROPIC_API_KEY" in last and "GITHUB_TOKEN" in last
    assert oct(out.stat().st_mode & 0o777) == "0o600"

    members = _members(out)
    blob = b"\n".join(members.values())
    for value in [*SECRETS.values(), BRIDGE_TOKEN, URL_PASSWORD, LOG_BEARER]:
        assert value.encode() not in blob, f"secret leaked: {value}"
        assert value not in stdout + stderr

    # ...and it still has what a bug report needs.
    for name in (
        "versions.json",
        "env.txt",
        "config/effective.json",
        "config/config.toml",
        "config/api_profiles.json",
        "doctor.json",
        "status.json",
        "processes.txt",
        "logs/daemon.log.1",
        "service.json",
        "README.txt",
    ):
        assert name in members, (name, sorted(members))
    env_txt = members["env.txt"].decode()
    assert "ANTHROPIC_API_KEY (set; value omitted)" in env_txt
    assert f"TUNDRA_HOME={home}" in env_txt
    status = json.loads(members["status.json"])
    assert status["pid"] == d.pid
    assert str(d.pid) in members["processes.txt"].decode()
    doctor = json.loads(members["doctor.json"])
    assert any(c["name"] == "daemon" and c["status"] == "ok" for c in doctor["checks"])
    effective = json.loads(members["config/effective.json"])
    assert effective["store"]["password_env"] == "DB_PW"  # names of variables stay readable
    assert effective["bridge"]["port"] == 3999
    log = members["logs/daemon.log.1"].decode()
    assert "request failed" in log and "[REDACTED]" in log
    assert (
        json.loads(members["config/api_profiles.json"])["profiles"][0]["api_key_env"]
        == "ACME_LLM_CRED"
    )


def test_bundle_keeps_only_the_tail_of_big_logs(tmp_path: Path, short_dir: Path) -> None:
    from tundra.paths import TundraPaths
    from tundra.service.diagnose import build_bundle

    home = short_dir
    (home / "logs").mkdir()
    line = "2026-01-01T00:00:00.000Z  INFO tundra.daemon: filler line\n"
    (home / "logs" / "daemon.log").write_text(
        line * 20000 + "2026-01-01T00:00:01.000Z  INFO x: LAST\n"
    )
    result = build_bundle(
        tmp_path / "b.tar.gz",
        paths=TundraPaths(home),
        env={"TUNDRA_HOME": str(home)},
        log_bytes=4096,
    )
    log = _members(Path(result.path))["logs/daemon.log"].decode()
    assert len(log) < 4096 + 200
    assert log.rstrip().endswith("LAST") and "bytes omitted" in log
    assert os.path.getsize(result.path) == result.bytes
