"""Isolated code execution: one ``run(code, tests, limits)`` interface, two backends.

``get_runner("auto")`` returns a :class:`Runner` on bubblewrap when it works here and on
the weaker rlimit fallback (with a loud warning) otherwise. Either way every execution
is a box (``watch.py``: a cgroup per run, or a watcher) holding the memory and CPU of
all its processes, under a seccomp filter (``seccomp.py``) that refuses new user
namespaces. See ``docs/sandbox.md``.
"""

from reasonmill.sandbox.compare import outputs_match
from reasonmill.sandbox.limits import STATUSES, Limits, TestResult
from reasonmill.sandbox.runner import Runner, fn_name_from_starter, get_runner, normalize_language, run

__all__ = [
    "STATUSES",
    "Limits",
    "Runner",
    "TestResult",
    "fn_name_from_starter",
    "get_runner",
    "normalize_language",
    "outputs_match",
    "run",
]
