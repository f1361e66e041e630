"""The exceptions that end a run, and the exit code each one maps to.

They live here, below every other module, so a client (``llm``), a verifier or a stage can
raise them without importing the engine or the stage contract.

- ``StopRun``: stopped on purpose, e.g. a spent budget. Everything finished is kept;
  the same command resumes. Exit code 3.
- ``ServiceFailure``: a service the run needs failed (connection refused, retries
  exhausted on 5xx or timeouts, an API key refused). The shard in progress is not
  recorded and its stage is not marked complete, so nothing about the failure is cached
  as if it were a decision about the data; the next run retries only what is not done.
  Exit code 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_ERROR = 1
EXIT_INVALID_PIPELINE = 2
EXIT_STOPPED = 3


class StopRun(Exception):
    """Raised by a stage to stop the run cleanly (e.g. a spent budget).

    The engine keeps every completed shard, marks the stage unfinished and returns; the
    same command resumes the run."""


class ServiceFailure(RuntimeError):
    """A service the run depends on failed; the message names it and says what to do."""
