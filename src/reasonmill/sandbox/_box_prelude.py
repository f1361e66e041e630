"""Names every sandboxed Python solution gets without importing them.

This file runs INSIDE the sandbox (standard library only, no ``reasonmill`` imports): the
runner copies it into the box and the first line of every ``solution.py`` star-imports
it (see :mod:`reasonmill.sandbox.prelude`). It holds

- the imports LeetCode-style and competitive-programming solutions use bare (``List``,
  ``Counter``, ``heappush``, ``bisect_left``, ``accumulate``, ``cache``, ``gcd``, ``inf``,
  ``ascii_lowercase``, ``xor``...), as the LeetCodeDataset / rllm and LiveCodeBench
  harnesses provide them;
- ``ListNode`` / ``TreeNode`` and the helpers LeetCode test code calls:
  ``list_node([1, 2])``, ``tree_node([1, None, 2])``, ``is_same_list``, ``is_same_tree``.

Being a module (not text pasted before the solution) keeps the solution's line numbers,
and the helpers always build *these* node classes even when a solution defines its own
``TreeNode`` (they share the ``val``/``left``/``right``/``next`` attributes).
"""

import bisect
import collections
import datetime
import functools
import heapq
import itertools
import math
import operator
import random
import re
import string
import sys
from typing import *  # noqa: F403  (first: ``collections`` below replaces its ``Counter`` etc.)
from bisect import *  # noqa: F403
from collections import *  # noqa: F403
from functools import *  # noqa: F403
from heapq import *  # noqa: F403
from itertools import *  # noqa: F403
from math import *  # noqa: F403
from operator import *  # noqa: F403
from string import *  # noqa: F403

# ``operator`` and ``math`` export ``pow`` (two arguments only) and ``operator`` exports
# ``abs``: drop them so the builtins (``pow(a, b, mod)``) stay visible.
del pow, abs  # noqa: F821

#: How many nodes a repr shows before it stops (long or cyclic lists stay readable).
REPR_NODES = 50


class ListNode:
    """Singly linked list node, as LeetCode defines it (identity equality, hashable)."""

    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next

    def __repr__(self):
        vals, node, seen = [], self, set()
        while node is not None and len(vals) < REPR_NODES:
            if id(node) in seen:
                return f"ListNode({vals} -> cycle)"
            seen.add(id(node))
            vals.append(node.val)
            node = node.next
        return f"ListNode({vals}{' ...' if node is not None else ''})"


class TreeNode:
    """Binary tree node, as LeetCode defines it (identity equality, hashable)."""

    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right

    def __repr__(self):
        return f"TreeNode({_level_order(self, REPR_NODES)})"


def list_node(values):
    """The linked list holding ``values`` in order; ``None`` for an empty list."""
    head = None
    for v in reversed(list(values or ())):
        head = ListNode(v, head)
    return head


def tree_node(values):
    """The tree of a LeetCode level-order list (``None`` = no child; the children of a
    missing node are not listed); ``None`` for an empty list or a ``None`` root."""
    values = list(values or ())
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    queue = collections.deque([root])
    i = 1
    while queue and i < len(values):
        node = queue.popleft()
        for side in ("left", "right"):
            if i < len(values) and values[i] is not None:
                child = TreeNode(values[i])
                setattr(node, side, child)
                queue.append(child)
            i += 1
    return root


def is_same_list(a, b):
    """Same values in the same order and the same length (iterative: long lists do not
    hit the recursion limit; a cyclic ``a`` fails once it outruns an acyclic ``b``)."""
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


def is_same_tree(a, b):
    """Same shape and the same values at every node (iterative)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is None or y is None:
            if x is not y:
                return False
            continue
        if x.val != y.val:
            return False
        stack.append((x.left, y.left))
        stack.append((x.right, y.right))
    return True


def _level_order(root, cap):
    """LeetCode's serialization (trailing ``None`` dropped), at most ``cap`` entries."""
    out, queue = [], collections.deque([root])
    while queue and len(out) < cap:
        node = queue.popleft()
        out.append(None if node is None else node.val)
        if node is not None:
            queue.append(node.left)
            queue.append(node.right)
    while out and out[-1] is None:
        out.pop()
    return out
