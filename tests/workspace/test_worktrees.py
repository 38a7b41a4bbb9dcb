"""WorktreeManager against real git repositories: create, errors, merge, conflicts, removal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.workspace.gitrepo import exists, git, make_repo
from tundra.workspace.errors import RepoError, WorktreeError
from tundra.workspace.worktrees import WorktreeManager


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj")


@pytest.fixture
def mgr(tmp_path: Path) -> WorktreeManager:
    return WorktreeManager(tmp_path / "home" / "data" / "worktrees", git_timeout=20)


def commit_file(where: Path, name: str, text: str) -> None:
    (where / name).write_text(text)
    git(where, "add", name)
    git(where, "commit", "-q", "-m", f"add {name}")


async def test_create_makes_worktree_on_task_branch_from_base(
    repo: Path, mgr: WorktreeManager, tmp_path: Path
) -> None:
    wt = await mgr.create(repo, "abc123", "main")
    assert wt.path == str(tmp_path / "home/data/worktrees/proj/abc123")
    assert wt.branch == "tundra/abc123"
    assert (Path(wt.path) / "README.md").read_text() == "hello\n"
    assert git(Path(wt.path), "rev-parse", "--abbrev-ref", "HEAD").strip() == "tundra/abc123"


async def test_not_a_git_repo(tmp_path: Path, mgr: WorktreeManager) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorktreeError, match="not a git repository"):
        await mgr.create(plain, "t1", "main")


async def test_missing_base_branch(repo: Path, mgr: WorktreeManager) -> None:
    with pytest.raises(RepoError, match="base branch not found: nope"):
        await mgr.create(repo, "t1", "nope")


async def test_dirty_base_branch_is_refused(repo: Path, mgr: WorktreeManager) -> None:
    (repo / "README.md").write_text("changed\n")
    with pytest.raises(WorktreeError, match="uncommitted changes"):
        await mgr.create(repo, "t1", "main")


async def test_branch_exists_and_path_exists(repo: Path, mgr: WorktreeManager) -> None:
    git(repo, "branch", "tundra/t1")
    with pytest.raises(WorktreeError, match="branch already exists: tundra/t1"):
        await mgr.create(repo, "t1", "main")
    mgr.path_for(repo, "t2").mkdir(parents=True)
    with pytest.raises(WorktreeError, match="worktree path already exists"):
        await mgr.create(repo, "t2", "main")


async def test_commit_all_and_merge_no_ff(repo: Path, mgr: WorktreeManager) -> None:
    wt = await mgr.create(repo, "t1", "main")
    (Path(wt.path) / "new.txt").write_text("agent work\n")
    assert await mgr.commit_all(wt.path, "task t1") is True
    assert await mgr.commit_all(wt.path, "task t1") is False
    assert await mgr.commits_ahead(repo, "main", wt.branch) == 1
    stat, diff = await mgr.diff(repo, "main", wt.branch)
    assert "new.txt" in stat and "+agent work" in diff
    res = await mgr.merge(repo, wt.branch, "main", "Merge tundra/t1")
    assert res.merged
    assert (repo / "new.txt").read_text() == "agent work\n"
    parents = git(repo, "rev-list", "--parents", "-n", "1", "HEAD").split()
    assert len(parents) == 3, "--no-ff makes a merge commit with two parents"
    await mgr.remove(repo, "t1", "main")
    assert not exists(wt.path)
    assert "tundra/t1" not in git(repo, "branch")


async def test_merge_when_base_not_checked_out(repo: Path, mgr: WorktreeManager) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    wt = await mgr.create(repo, "t1", "main")
    commit_file(Path(wt.path), "f.txt", "x\n")
    res = await mgr.merge(repo, wt.branch, "main", "Merge")
    assert res.merged
    assert "f.txt" in git(repo, "ls-tree", "--name-only", "main")
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "other"


async def test_merge_conflict_aborts_and_lists_files(repo: Path, mgr: WorktreeManager) -> None:
    wt = await mgr.create(repo, "t1", "main")
    commit_file(Path(wt.path), "README.md", "from agent\n")
    commit_file(repo, "README.md", "from user\n")
    before = git(repo, "rev-parse", "HEAD")
    res = await mgr.merge(repo, wt.branch, "main", "Merge")
    assert not res.merged
    assert res.conflicts == ["README.md"]
    assert git(repo, "rev-parse", "HEAD") == before
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert exists(wt.path)


async def test_remove_refuses_unmerged_commits_without_force(
    repo: Path, mgr: WorktreeManager
) -> None:
    wt = await mgr.create(repo, "t1", "main")
    commit_file(Path(wt.path), "f.txt", "x\n")
    with pytest.raises(WorktreeError, match="unmerged commit"):
        await mgr.remove(repo, "t1", "main")
    assert exists(wt.path)
    await mgr.remove(repo, "t1", "main", force=True)
    assert not exists(wt.path)


async def test_ensure_reuses_and_reattaches(repo: Path, mgr: WorktreeManager) -> None:
    wt = await mgr.create(repo, "t1", "main")
    commit_file(Path(wt.path), "f.txt", "x\n")
    again = await mgr.ensure(repo, "t1", "main")
    assert again.path == wt.path
    shutil.rmtree(wt.path)
    await mgr.prune(repo)
    third = await mgr.ensure(repo, "t1", "main")
    assert (Path(third.path) / "f.txt").read_text() == "x\n"
