"""Teacher access: an async OpenAI-compatible client with a response cache and flow control.

Modules: ``client`` (requests, retries, budgets, accounting), ``cache`` (SQLite WAL
content-addressed cache), ``ratelimit`` (RPM/TPM buckets), ``transport`` (aiohttp or
httpx), ``prompts`` (templates per category), ``progress`` (live bar),
``local_server`` (llama.cpp teacher), ``vllm_engine`` (in-process vLLM, optional),
``run_cli`` (standalone driver). The ``generate`` stage wires them together.
"""

from .cache import ResponseCache, cache_key
from .client import Accounting, BudgetExhausted, ChatClient, ClientConfig, Failure, FatalRequestError

__all__ = [
    "Accounting",
    "BudgetExhausted",
    "ChatClient",
    "ClientConfig",
    "Failure",
    "FatalRequestError",
    "ResponseCache",
    "cache_key",
]
