"""Errors of git worktree handling, with messages that say which path/branch is at fault."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = ["WorktreeError", "RepoError", "GitReadError"]


class WorktreeError(TundraError):
    """A worktree cannot be created or removed (not a repo, branch/path exists, unmerged work)."""

    code = "workspace.worktree"
    http_status = 409


class RepoError(WorktreeError):
    """The repository itself is unusable (not a git repo, missing/dirty base branch)."""

    code = "workspace.repo"
    http_status = 400


class GitReadError(TundraError):
    """A git command failed or timed out."""

    code = "workspace.git"
    http_status = 500
