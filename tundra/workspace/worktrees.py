"""Git worktrees per task: create on ``tundra/<task-id>``, diff, merge --no-ff, remove safely.

Layout: ``<root>/<repo-name>/<task-id>`` where ``root`` is ``$TUNDRA_HOME/data/worktrees``.
Every git call runs through :func:`tundra.workspace.git.run_git` (trio subprocess, deadline).
"""

from __future__ import annotations

import logging
import secrets
import shutil
from pathlib import Path

import msgspec
import trio

from tundra.workspace.errors import GitReadError, RepoError, WorktreeError
from tundra.workspace.git import DEFAULT_GIT_TIMEOUT, run_git

__all__ = ["Worktree", "MergeResult", "WorktreeManager", "branch_for"]

log = logging.getLogger("tundra.workspace.worktrees")

_FALLBACK_IDENTITY = ["-c", "user.name=Tundra", "-c", "user.email=tundra@localhost"]


def branch_for(task_id: str) -> str:
    return f"tundra/{task_id}"


class Worktree(msgspec.Struct, frozen=True, kw_only=True):
    repo: str
    path: str
    branch: str
    base_branch: str


class MergeResult(msgspec.Struct, frozen=True, kw_only=True):
    merged: bool
    commit: str = ""
    conflicts: list[str] = msgspec.field(default_factory=list)
    message: str = ""


class WorktreeManager:
    """Creates and removes task worktrees under ``root``."""

    def __init__(self, root: Path, *, git_timeout: float = DEFAULT_GIT_TIMEOUT) -> None:
        self.root = root
        self.git_timeout = git_timeout

    async def _git(self, args: list[str], cwd: str | Path, *, check: bool = True) -> str:
        res = await run_git(args, cwd=cwd, timeout=self.git_timeout, check=check)
        return res.stdout

    async def repo_root(self, repo: str | Path) -> Path:
        """The top level of the repository containing ``repo`` (RepoError if none)."""
        p = Path(await trio.Path(repo).expanduser())
        if not await trio.Path(p).is_dir():
            raise RepoError(f"not a git repository: {p} (no such directory)")
        res = await run_git(
            ["rev-parse", "--show-toplevel"], cwd=p, timeout=self.git_timeout, check=False
        )
        if res.returncode != 0:
            raise RepoError(f"not a git repository: {p}")
        return Path(res.stdout.strip())

    async def current_branch(self, repo: str | Path) -> str:
        res = await run_git(
            ["symbolic-ref", "--short", "-q", "HEAD"],
            cwd=repo,
            timeout=self.git_timeout,
            check=False,
        )
        name = res.stdout.strip()
        if res.returncode != 0 or not name:
            raise RepoError(
                f"repository HEAD is detached, cannot pick a base branch: {repo}",
                hint="pass --base BRANCH",
            )
        return name

    async def branch_exists(self, repo: str | Path, branch: str) -> bool:
        res = await run_git(
            ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=repo,
            timeout=self.git_timeout,
            check=False,
        )
        return res.returncode == 0

    def path_for(self, repo_root: Path, task_id: str) -> Path:
        return self.root / repo_root.name / task_id

    async def _checked_out_at(self, repo: Path, branch: str) -> Path | None:
        """The worktree (main checkout included) that has ``branch`` checked out, if any."""
        out = await self._git(["worktree", "list", "--porcelain"], repo)
        current: Path | None = None
        for line in out.splitlines():
            if line.startswith("worktree "):
                current = Path(line[len("worktree ") :])
            elif line == f"branch refs/heads/{branch}" and current is not None:
                return current
        return None

    async def _is_dirty(self, path: Path) -> bool:
        out = await self._git(["status", "--porcelain", "--untracked-files=no"], path)
        return bool(out.strip())

    async def _is_registered(self, repo: Path, path: Path) -> bool:
        out = await self._git(["worktree", "list", "--porcelain"], repo)
        target = await trio.Path(path).resolve()
        for line in out.splitlines():
            if line.startswith("worktree ") and await trio.Path(line[9:]).resolve() == target:
                return True
        return False

    async def check_base(self, repo: Path, base_branch: str) -> None:
        """RepoError when the base branch is missing or has uncommitted tracked changes."""
        if not await self.branch_exists(repo, base_branch):
            raise RepoError(f"base branch not found: {base_branch} in {repo}")
        at = await self._checked_out_at(repo, base_branch)
        if at is not None and await trio.Path(at).exists() and await self._is_dirty(at):
            raise RepoError(
                f"base branch {base_branch} has uncommitted changes in {at}",
                hint="commit or stash them first",
            )

    async def create(self, repo: str | Path, task_id: str, base_branch: str) -> Worktree:
        """A new worktree on a new branch ``tundra/<task_id>`` from ``base_branch``."""
        root = await self.repo_root(repo)
        branch = branch_for(task_id)
        await self.check_base(root, base_branch)
        if await self.branch_exists(root, branch):
            raise WorktreeError(f"branch already exists: {branch} in {root}")
        path = self.path_for(root, task_id)
        if await trio.Path(path).exists():
            raise WorktreeError(f"worktree path already exists: {path}")
        await trio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True))
        await self._git(["worktree", "add", "-b", branch, str(path), base_branch], root)
        log.info("worktree created", extra={"fields": {"path": str(path), "branch": branch}})
        return Worktree(repo=str(root), path=str(path), branch=branch, base_branch=base_branch)

    async def ensure(self, repo: str | Path, task_id: str, base_branch: str) -> Worktree:
        """The task's worktree: reused when it exists (retry, reject), re-attached to an
        existing task branch, or created fresh."""
        root = await self.repo_root(repo)
        branch = branch_for(task_id)
        path = self.path_for(root, task_id)
        if await trio.Path(path).exists() and await self._is_registered(root, path):
            return Worktree(repo=str(root), path=str(path), branch=branch, base_branch=base_branch)
        if await self.branch_exists(root, branch):
            if await trio.Path(path).exists():
                raise WorktreeError(f"worktree path already exists: {path}")
            await self._git(["worktree", "prune"], root)
            await trio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True))
            await self._git(["worktree", "add", str(path), branch], root)
            return Worktree(repo=str(root), path=str(path), branch=branch, base_branch=base_branch)
        return await self.create(root, task_id, base_branch)

    async def prune(self, repo: str | Path) -> None:
        """Forget worktrees whose directories are gone (``git worktree prune``)."""
        await self._git(["worktree", "prune"], repo)

    async def identity_args(self, cwd: str | Path) -> list[str]:
        """``-c user.*`` fallbacks for commits when git has no identity configured."""
        res = await run_git(
            ["config", "user.email"], cwd=cwd, timeout=self.git_timeout, check=False
        )
        return [] if res.stdout.strip() else list(_FALLBACK_IDENTITY)

    async def commit_all(self, path: str | Path, message: str) -> bool:
        """Commit every change in the worktree (agents may not commit); False if clean."""
        await self._git(["add", "-A"], path)
        res = await run_git(
            ["diff", "--cached", "--quiet"], cwd=path, timeout=self.git_timeout, check=False
        )
        if res.returncode == 0:
            return False
        ident = await self.identity_args(path)
        await self._git([*ident, "commit", "-q", "--no-verify", "-m", message], path)
        return True

    async def commits_ahead(self, repo: str | Path, base_branch: str, branch: str) -> int:
        out = await self._git(["rev-list", "--count", f"{base_branch}..{branch}"], repo)
        return int(out.strip() or "0")

    async def diff(self, repo: str | Path, base_branch: str, branch: str) -> tuple[str, str]:
        """(``--stat``, full patch) of ``branch`` since it forked from ``base_branch``."""
        rng = f"{base_branch}...{branch}"
        stat = await self._git(["diff", "--stat", rng], repo)
        patch = await self._git(["diff", rng], repo)
        return stat, patch

    async def merge(
        self, repo: str | Path, branch: str, base_branch: str, message: str
    ) -> MergeResult:
        """Merge ``branch`` into ``base_branch`` with ``--no-ff``.

        Where the base is checked out (usually the main checkout) the merge runs there; else in
        a temporary detached worktree whose result is then moved onto the base ref. A conflict
        aborts the merge and reports the conflicting files; nothing is left half-merged.
        """
        root = await self.repo_root(repo)
        if not await self.branch_exists(root, base_branch):
            raise RepoError(f"base branch not found: {base_branch} in {root}")
        at = await self._checked_out_at(root, base_branch)
        ident = await self.identity_args(root)
        if at is not None:
            if await self._is_dirty(at):
                raise RepoError(
                    f"base branch {base_branch} has uncommitted changes in {at}",
                    hint="commit or stash them, then approve again",
                )
            return await self._merge_in(at, branch, message, ident)
        tmp = self.root / ".merge" / f"{branch.replace('/', '-')}-{secrets.token_hex(3)}"
        await trio.to_thread.run_sync(lambda: tmp.parent.mkdir(parents=True, exist_ok=True))
        old = (await self._git(["rev-parse", f"refs/heads/{base_branch}"], root)).strip()
        await self._git(["worktree", "add", "--detach", str(tmp), base_branch], root)
        try:
            result = await self._merge_in(tmp, branch, message, ident)
            if result.merged:
                await self._git(
                    ["update-ref", f"refs/heads/{base_branch}", result.commit, old], root
                )
            return result
        finally:
            with trio.CancelScope(shield=True):
                await run_git(
                    ["worktree", "remove", "--force", str(tmp)],
                    cwd=root,
                    timeout=self.git_timeout,
                    check=False,
                )

    async def _merge_in(
        self, where: Path, branch: str, message: str, ident: list[str]
    ) -> MergeResult:
        res = await run_git(
            [*ident, "merge", "--no-ff", "--no-edit", "-m", message, branch],
            cwd=where,
            timeout=self.git_timeout,
            check=False,
        )
        if res.returncode == 0:
            head = (await self._git(["rev-parse", "HEAD"], where)).strip()
            return MergeResult(merged=True, commit=head, message=res.stdout.strip())
        files_out = await run_git(
            ["diff", "--name-only", "--diff-filter=U"],
            cwd=where,
            timeout=self.git_timeout,
            check=False,
        )
        conflicts = [f for f in files_out.stdout.splitlines() if f.strip()]
        await run_git(["merge", "--abort"], cwd=where, timeout=self.git_timeout, check=False)
        if not conflicts:
            raise GitReadError(
                f"git merge {branch} failed: {(res.stderr or res.stdout).strip()}",
                details={"cwd": str(where)},
            )
        return MergeResult(merged=False, conflicts=conflicts, message=res.stdout.strip())

    async def remove(
        self,
        repo: str | Path,
        task_id: str,
        base_branch: str,
        *,
        force: bool = False,
        delete_branch: bool = True,
    ) -> None:
        """Remove the task's worktree (and its branch once merged).

        Refuses (WorktreeError) when the branch has commits not in ``base_branch`` or the
        worktree has uncommitted changes, unless ``force``.
        """
        root = await self.repo_root(repo)
        branch = branch_for(task_id)
        path = self.path_for(root, task_id)
        has_branch = await self.branch_exists(root, branch)
        if not force:
            if has_branch:
                ahead = await self.commits_ahead(root, base_branch, branch)
                if ahead:
                    raise WorktreeError(
                        f"{branch} has {ahead} unmerged commit(s); not removing {path}",
                        hint="approve the task to merge it, or remove with --force",
                    )
            if await trio.Path(path).exists() and await self._is_registered(root, path):
                out = await self._git(["status", "--porcelain"], path)
                if out.strip():
                    raise WorktreeError(
                        f"worktree has uncommitted changes: {path}",
                        hint="remove with --force to discard them",
                    )
        if await trio.Path(path).exists():
            if await self._is_registered(root, path):
                args = ["worktree", "remove", *(["--force"] if force else []), str(path)]
                await self._git(args, root)
            else:
                await trio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))
        await self._git(["worktree", "prune"], root)
        if delete_branch and has_branch:
            await self._git(["branch", "-D" if force else "-d", branch], root)
        log.info("worktree removed", extra={"fields": {"path": str(path), "branch": branch}})
