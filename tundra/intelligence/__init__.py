"""LLM providers, profiles, failover router and usage tracking."""
