"""Which source files a stage's result depends on, for its resume fingerprint.

Why: a stage's fingerprint used to hash only the stage class's own module, so editing
``verify/math.py`` or ``text.py`` did not re-run ``verify`` or ``dedup.minhash`` and a
resumed run reused stale results. Here the fingerprint covers the transitive closure of
the modules the stage's module imports, found by reading their source (``import`` and
``from … import`` anywhere in the file, function bodies included, since stages import
their verifiers lazily). Only modules of the stage's own top-level package and of
reasonmill are followed: third-party libraries are versioned by their own releases, and
the stages that depend on one put its version in their cache keys.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

_FOLLOWED_ROOTS = ("reasonmill",)


def module_closure(module_name: str) -> dict[str, Path]:
    """Every followed module reachable from ``module_name`` by imports: name -> source file."""
    roots = {*_FOLLOWED_ROOTS, module_name.split(".")[0]}
    found: dict[str, Path] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = _source_file(name)
        if path is None:
            continue
        found[name] = path
        if "." not in name and path.name == "__init__.py":
            continue  # a top-level package's __init__ is a lazy facade (reasonmill.Pipeline)
        todo.extend(dep for dep in _imports_of(name, path) if dep.split(".")[0] in roots and dep not in found)
    return found


def closure_fingerprint(module_name: str) -> str:
    """A hash of the sources of every module in ``module_closure`` (names and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, path in sorted(module_closure(module_name).items()):
        h.update(name.encode())
        h.update(b"\0")
        h.update(_file_digest(path, path.stat().st_mtime_ns, path.stat().st_size))
    return h.hexdigest()


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int, size: int) -> bytes:
    """The file's hash; keyed by mtime and size so an edit in a long-lived process is seen."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()


def _source_file(name: str) -> Path | None:
    """The module's ``.py`` file, found on disk without importing anything (importing a
    subpackage would run its ``__init__`` and need its optional dependencies)."""
    top, _, rest = name.partition(".")
    root = _package_dir(top)
    if root is None:
        return None
    base = root.joinpath(*rest.split(".")) if rest else root
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _package_dir(top: str) -> Path | None:
    module = sys.modules.get(top)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return None
    path = Path(origin)
    return path.parent if path.name == "__init__.py" else path.with_suffix("")


def _imports_of(name: str, path: Path) -> set[str]:
    """Module names imported by the file, relative imports resolved; ``from a import b``
    yields ``a`` and, when it is a submodule, ``a.b``."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - node.level + 1]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            if not base:
                continue
            parts = base.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names
