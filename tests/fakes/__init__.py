"""Fake external services for tests and benchmarks (LLM provider, agent CLI)."""
