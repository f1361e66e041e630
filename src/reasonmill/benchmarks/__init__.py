"""Evaluation benchmarks that decontamination checks against (see ``registry``)."""

from .registry import (
    BUILTIN,
    GPQA_PASSWORD,
    BenchmarkError,
    BenchmarkSpec,
    load_benchmark,
    load_benchmarks,
    resolve_spec,
)

__all__ = ["BUILTIN", "GPQA_PASSWORD", "BenchmarkError", "BenchmarkSpec", "load_benchmark", "load_benchmarks",
           "resolve_spec"]
