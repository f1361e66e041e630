"""Resource limits for one sandboxed execution, and the per-test result type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Every status a test can end with. Only ``passed`` counts as a pass.
STATUSES = (
    "passed",  # output / return value matched, or every assert held
    "failed",  # wrong answer or a failed assert
    "error",  # the program raised or exited non-zero
    "timeout",  # wall clock or CPU time exceeded
    "output_limit",  # printed more than ``output_cap_bytes``; killed
    "crashed",  # killed by a signal (memory, fork bomb, segfault) without a result
    "compile_error",  # C++ did not compile
    "unsupported",  # a test kind the language cannot run (functional tests in C++)
)


class Limits(BaseModel):
    """Per-test limits. Python functional/assert/check tests of one response share one
    process; that process gets ``cpu_seconds`` and ``wall_timeout`` once per test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_seconds: float = Field(
        4.0, gt=0, description="RLIMIT_CPU per process per test; the whole box gets it once (+1.5 s) in total"
    )
    wall_timeout: float = Field(6.0, gt=0, description="wall-clock seconds per test; the process group is killed")
    memory_mb: int = Field(
        1024, gt=16, description="MiB: RLIMIT_AS of each process, and the memory of the whole box"
    )
    file_size_mb: int = Field(16, ge=0, description="RLIMIT_FSIZE in MiB")
    nproc: int = Field(64, gt=0, description="RLIMIT_NPROC (processes+threads of the sandbox uid), pids.max")
    cpus: float = Field(1.0, gt=0, description="CPU quota of the whole box, in CPUs (cgroup cpu.max)")
    nofile: int = Field(64, gt=3, description="RLIMIT_NOFILE")
    output_cap_bytes: int = Field(1 << 20, gt=0, description="stdout+stderr cap; the program is killed past it")
    scratch_mb: int = Field(64, gt=0, description="size of the tmpfs scratch /tmp (bwrap backend)")
    compile_timeout: float = Field(30.0, gt=0, description="wall seconds for g++")
    compile_memory_mb: int = Field(2048, gt=16, description="RLIMIT_AS for g++")


@dataclass
class TestResult:
    """The outcome of one test. ``index`` is the position in the ``tests`` list given."""

    __test__ = False  # not a pytest test class, despite the name

    index: int
    kind: str
    status: str
    passed: bool
    message: str = ""
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    backend: str = ""
    warning: str | None = None  # set when isolation is weaker than bubblewrap
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
