"""Resilience primitives: token-bucket rate limiter, circuit breaker, retry/backoff, harness.toml."""
