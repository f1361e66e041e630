"""Verifiers: math, code, choice, reward, format. Each returns a ``Verdict``."""

from reasonmill.verify.base import Verdict, Verifier

__all__ = ["Verdict", "Verifier"]
