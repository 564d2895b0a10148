"""Talking to an LLM: the :class:`~dialin.models.ChatClient` implementations (an
OpenAI-compatible server over HTTP, in-process vLLM), the prompts and strict parsers, the
circuit breaker and the accounting of calls and tokens.

The judge, namer and pruner that use a client live in :mod:`dialin.models.judges`.
Public names are re-exported from :mod:`dialin.models`.
"""
