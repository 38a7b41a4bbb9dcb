"""Carrying out a plan: files written atomically with mode 0644, removed on uninstall."""

from __future__ import annotations

import stat
from pathlib import Path

from tundra.service.manager import PlannedFile, ServicePlan, execute


def test_execute_writes_and_removes_unit_files(tmp_path: Path) -> None:
    unit = tmp_path / "systemd" / "user" / "tundra-daemon.service"
    logs = tmp_path / "Library" / "Logs" / "tundra"
    install = ServicePlan(
        action="install",
        manager="launchd",
        scope="user",
        files=[PlannedFile(path=str(unit), content="[Service]\nExecStart=/bin/true\n")],
        dirs=[str(logs)],
    )
    done = execute(install)
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert done == [f"wrote {unit}"]
    assert not list(unit.parent.glob("*.tmp"))
    remove = ServicePlan(
        action="uninstall",
        manager="launchd",
        scope="user",
        files=[PlannedFile(path=str(unit), content="", remove=True)],
    )
    assert execute(remove) == [f"removed {unit}"]
    assert not unit.exists()
    # Removing what is already gone is not an error.
    assert execute(remove) == []
