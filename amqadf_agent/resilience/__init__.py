"""Resilience tools: circuit breaker, retry, fallback, timeout, rate limit."""
