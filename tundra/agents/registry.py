"""Agent presets as data: built-ins from ``presets.toml`` merged with ``config/agents.toml``.

A preset says how to run one agent CLI headless in a worktree (argv template, env, endpoint
env names, markers, resume style, stuck policy). Unknown or invalid presets raise
:class:`~tundra.agents.errors.RegistryError`, which names the preset and lists known ones.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec

from tundra.agents.errors import RegistryError
from tundra.tasks.api import PresetInfo

__all__ = ["AgentPreset", "PresetRegistry", "load_registry", "preset_infos", "BUILTIN_SOURCE"]

BUILTIN_SOURCE = "builtin"
StuckPolicy = Literal["nudge", "restart", "fail"]
ResumeStyle = Literal["none", "session", "last"]


class AgentPreset(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str = ""
    description: str = ""
    command: list[str]
    interactive: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] = msgspec.field(default_factory=dict)
    base_url_env: list[str] = msgspec.field(default_factory=list)
    base_url: str = ""
    completion_markers: list[str] = msgspec.field(default_factory=list)
    idle_markers: list[str] = msgspec.field(default_factory=list)
    resume: ResumeStyle = "none"
    resume_command: list[str] = msgspec.field(default_factory=list)
    """argv that continues an interrupted session; ``{session_id}`` is the captured id."""
    session_id_pattern: str = ""
    """Regex whose first group is the agent's session id in its output."""
    stuck_policy: StuckPolicy = "nudge"
    nudge_text: str = ""
    stuck_after_secs: float = 0.0
    """0 = ``[agents] stuck_after_secs``."""
    feedback_template: str = "\n\nReviewer feedback (previous attempt rejected): {reason}"
    """Appended to the prompt when a review is rejected with a reason."""
    source: str = BUILTIN_SOURCE

    def __post_init__(self) -> None:
        if not self.command or not self.command[0].strip():
            raise ValueError("command must be a non-empty list of strings")
        if self.session_id_pattern:
            try:
                if re.compile(self.session_id_pattern).groups < 1:
                    raise ValueError("session_id_pattern needs a capturing group")
            except re.error as exc:
                raise ValueError(f"session_id_pattern is not a valid regex: {exc}") from None
        if self.stuck_after_secs < 0:
            raise ValueError("stuck_after_secs must be >= 0")

    @property
    def binary(self) -> str:
        return self.command[0]

    def which(self) -> str | None:
        """Absolute path of the binary, or None when it is not installed."""
        return shutil.which(self.binary)

    def can_resume(self, session_id: str) -> bool:
        return bool(self.resume != "none" and self.resume_command and session_id)

    def render(
        self,
        prompt: str,
        *,
        task_id: str = "",
        worktree: str = "",
        session_id: str = "",
        resume: bool = False,
    ) -> list[str]:
        """The headless argv with placeholders filled (the prompt stays one argument); with
        ``resume`` (and a session id) the ``resume_command`` instead."""
        subst = {
            "{prompt}": prompt,
            "{task_id}": task_id,
            "{worktree}": worktree,
            "{session_id}": session_id,
        }
        template = self.resume_command if resume and self.can_resume(session_id) else self.command
        out = []
        for arg in template:
            for key, val in subst.items():
                if key in arg:
                    arg = arg.replace(key, val)
            out.append(arg)
        return out

    def with_feedback(self, prompt: str, reason: str) -> str:
        if not reason:
            return prompt
        return prompt + self.feedback_template.replace("{reason}", reason)

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(self.env)
        if self.base_url:
            for name in self.base_url_env:
                env[name] = self.base_url
        if extra:
            env.update(extra)
        return env


class PresetRegistry:
    """Name -> :class:`AgentPreset`."""

    def __init__(self, presets: Mapping[str, AgentPreset]) -> None:
        self._presets = dict(presets)

    def names(self) -> list[str]:
        return sorted(self._presets)

    def get(self, name: str) -> AgentPreset:
        try:
            return self._presets[name]
        except KeyError:
            raise RegistryError(
                f"unknown agent preset: {name}", preset=name, known=self._presets
            ) from None

    def all(self) -> list[AgentPreset]:
        return [self._presets[n] for n in self.names()]


def _parse_table(
    name: str, table: Any, base: AgentPreset | None, source: str, known: list[str]
) -> AgentPreset:
    if not isinstance(table, dict):
        raise RegistryError(
            f"invalid agent preset {name} in {source}: expected a table", preset=name, known=known
        )
    merged: dict[str, Any] = msgspec.to_builtins(base) if base is not None else {}
    merged.update(table)
    merged["name"] = name
    merged["source"] = source
    try:
        return msgspec.convert(merged, AgentPreset)
    except (msgspec.ValidationError, ValueError) as exc:
        raise RegistryError(
            f"invalid agent preset {name} in {source}: {exc}", preset=name, known=known
        ) from None


def _parse_doc(
    doc: dict[str, Any], source: str, base: Mapping[str, AgentPreset]
) -> dict[str, AgentPreset]:
    presets = dict(base)
    tables = doc.get("presets", {})
    if not isinstance(tables, dict):
        raise RegistryError(
            f"invalid agents file {source}: [presets] must be a table",
            preset="",
            known=presets,
        )
    known = sorted(set(presets) | set(tables))
    for name, table in tables.items():
        presets[name] = _parse_table(name, table, base.get(name), source, known)
    return presets


def builtin_presets() -> dict[str, AgentPreset]:
    text = resources.files("tundra.agents").joinpath("presets.toml").read_text("utf-8")
    return _parse_doc(tomllib.loads(text), BUILTIN_SOURCE, {})


def load_registry(agents_file: Path | None = None) -> PresetRegistry:
    """Built-ins, overridden/extended by ``agents_file`` when it exists. Blocking (file I/O):
    call from a thread inside the daemon."""
    presets = builtin_presets()
    if agents_file is not None and agents_file.is_file():
        try:
            doc = tomllib.loads(agents_file.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(
                f"invalid agents file {agents_file}: {exc}", preset="", known=presets
            ) from None
        presets = _parse_doc(doc, str(agents_file), presets)
    return PresetRegistry(presets)


def preset_infos(registry: PresetRegistry) -> list[PresetInfo]:
    """What `tundra agents ls` shows, including whether each binary is installed. Blocking
    (PATH lookups): call from a thread inside the daemon."""
    out = []
    for p in registry.all():
        path = p.which()
        out.append(
            PresetInfo(
                name=p.name,
                description=p.description,
                binary=p.binary,
                available=path is not None,
                path=path or "",
                command=list(p.command),
                source=p.source,
                extra={
                    "resume": p.resume,
                    "stuck_policy": p.stuck_policy,
                    "base_url_env": p.base_url_env,
                },
            )
        )
    return out
