"""The prelude of sandboxed Python programs: what ``solution.py`` looks like in the box.

Every Python solution runs as ONE header line followed by the solution's own text::

    import sys; sys.path.append('/box/lib'); from _box_prelude import *

where ``/box/lib`` holds :mod:`reasonmill.sandbox._box_prelude` (common imports,
``ListNode``/``TreeNode``, ``tree_node``, ``is_same_tree``...). One line keeps the
solution's line numbers in tracebacks off by one only.

``sortedcontainers`` (``SortedList``, ``SortedDict``, ``SortedSet``) is a PyPI package,
not stdlib; the sandboxed interpreter does not see the host's site-packages, so the
package directory is copied into ``lib`` as well. Importing it costs tens of ms per
process, so that happens only when the solution or its tests name it.

``from __future__`` imports must stay the first statement of a file, so they move
above the header (their own line becomes blank, keeping the line count).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

from reasonmill.sandbox import _box_prelude

log = logging.getLogger(__name__)

LIB_DIR = "lib"
_SORTED_NAMES = "SortedList, SortedKeyList, SortedDict, SortedSet"
_NAMES_SORTED = re.compile(r"\bsortedcontainers\b|\bSorted(?:Key)?(?:List|Dict|Set)\b")
_FUTURE = re.compile(r"^from[ \t]+__future__[ \t]+import[ \t]+[^\n(]+$", re.M)


def names_sortedcontainers(*texts: str) -> bool:
    """Whether any text (the solution, a test) mentions ``sortedcontainers`` or one of its
    classes, so the package must be importable in the box."""
    return any(_NAMES_SORTED.search(t) for t in texts if t)


@lru_cache(maxsize=1)
def sortedcontainers_dir() -> Path | None:
    """The host's ``sortedcontainers`` package directory (a declared dependency), or None
    with a warning when it is missing."""
    spec = importlib.util.find_spec("sortedcontainers")
    if spec is None or not spec.submodule_search_locations:
        log.warning("sandbox prelude: sortedcontainers is not installed, so solutions using SortedList "
                    "fail with a NameError; pip install sortedcontainers")  # fmt: skip
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def write_lib(box_dir: str, *, sortedcontainers: bool) -> bool:
    """Fill ``<box_dir>/lib`` (world-readable: the sandbox runs as another uid).
    Returns whether ``sortedcontainers`` is in it."""
    lib = os.path.join(box_dir, LIB_DIR)
    os.makedirs(lib, exist_ok=True)
    shutil.copyfile(_box_prelude.__file__, os.path.join(lib, "_box_prelude.py"))
    pkg = sortedcontainers_dir() if sortedcontainers else None
    if pkg is not None:
        shutil.copytree(pkg, os.path.join(lib, "sortedcontainers"), dirs_exist_ok=True)
    make_readable(lib)
    return pkg is not None


def make_readable(tree: str) -> None:
    """Every dir and file below ``tree`` readable by all: the sandbox runs as another uid."""
    for root, _, files in os.walk(tree):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def program(code: str, lib_path: str, *, sortedcontainers: bool = False) -> str:
    """The text of ``solution.py``: header line (with ``lib_path`` as the sandbox sees
    it) + ``code``, ``from __future__`` lines hoisted above the header."""
    futures = _FUTURE.findall(code)
    if futures:
        code = _FUTURE.sub("", code)
    header = f"import sys; sys.path.append({lib_path!r}); from _box_prelude import *"
    if sortedcontainers:
        header += f"; from sortedcontainers import {_SORTED_NAMES}"
    return "".join(f + "\n" for f in futures) + header + "\n" + code
