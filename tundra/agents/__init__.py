"""Agents: the preset registry (data), the runner/supervisor of one attempt, and approval merges."""
