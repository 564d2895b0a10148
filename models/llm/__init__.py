"""Talking to an LLM: the OpenAI-compatible and in-process vLLM backends, the prompts,
the circuit breaker and the accounting of calls and tokens.

Public names are re-exported from :mod:`dialin.models`.
"""
