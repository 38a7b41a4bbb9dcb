"""Workspace: git worktrees per task run, created and removed through the git CLI."""
