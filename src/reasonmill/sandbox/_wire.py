"""Values across the sandbox boundary: JSON of builtin types, decoded into fresh objects.

Why: a value a solution returns must never be compared as the solution's own object. An
``int`` subclass, or any object whose ``__eq__`` always returns True, would pass every
``==``. So a value leaves the process that made it as JSON of builtin types only, and
the receiver builds new objects of types it trusts. Anything else cannot be encoded.

This file runs inside the sandbox (standard library only, no ``reasonmill`` imports):
both processes of the harness use it, and the host uses it to read functional results.

Encoding: ``None``, ``bool``, ``str``, finite or not ``float`` and small ``int`` are
plain JSON; a list is a JSON array; every other value is ``{"$": tag, "v": ...}``.
Exact types only (and the builtin types themselves, ``int`` as an argument), except the
standard library's ``Counter``, ``OrderedDict``, ``defaultdict`` (sent as ``dict``),
``deque`` and named tuples (sent as ``tuple``).
Iterators and generators are drained (at most ``MAX_ITEMS``) and arrive as iterators.
Linked-list and tree nodes (LeetCode's ``ListNode``/``TreeNode``) travel as a node table,
so shared and cyclic nodes stay shared and cyclic. A ``ref`` names an object that stays
in the solution's process (see ``_harness``).
"""

from __future__ import annotations

import builtins
import collections
import json
import sys

MAX_ITEMS = 1_000_000
_SAFE_INT = 1 << 53
_NUMBER_TYPES = {("decimal", "Decimal"), ("fractions", "Fraction")}  # imported lazily: rarely needed


class WireError(ValueError):
    """A value that cannot cross the boundary (a non-builtin type, a cycle, bad JSON)."""


class Encoder:
    """Encodes values; ``node_kind(obj)`` says whether an object is a tree (``"T"``) or
    list (``"L"``) node, ``ref_of(obj)`` gives the ref of an object that stays remote."""

    def __init__(self, node_kind=None, ref_of=None) -> None:
        self.node_kind = node_kind or (lambda obj: None)
        self.ref_of = ref_of or (lambda obj: None)
        self.nodes: list = []
        self._node_ids: dict[int, int] = {}
        self._open: set[int] = set()
        self._held: list = []

    def message(self, value) -> dict:
        """``{"v": encoded, "n": node table}``: one value and the nodes it reaches."""
        v = self.encode(value)
        return {"v": v, "n": self.nodes}

    def encode(self, x):
        t = type(x)
        if x is None or t is bool or t is str:
            return x
        if t is int:
            return x if -_SAFE_INT < x < _SAFE_INT else {"$": "int", "v": hex(x)}
        if t is float:
            return x
        if t is list:
            return self._seq(x)
        if t is tuple:
            return {"$": "tuple", "v": self._seq(x)}
        if t is dict or t is collections.defaultdict:
            return {"$": "dict", "v": self._pairs(x)}
        if t is collections.Counter or t is collections.OrderedDict:
            return {"$": t.__name__, "v": self._pairs(x)}
        if t is set or t is frozenset or t is collections.deque:
            return {"$": t.__name__, "v": self._seq(x)}
        if t is bytes or t is bytearray:
            return {"$": t.__name__, "v": bytes(x).decode("latin-1")}
        if t is complex:
            return {"$": "complex", "v": [x.real, x.imag]}
        if t is range:
            return {"$": "range", "v": [x.start, x.stop, x.step]}
        if (t.__module__, t.__name__) in _NUMBER_TYPES and t is getattr(sys.modules.get(t.__module__), t.__name__, None):
            return {"$": t.__name__, "v": str(x)}  # the decoder rebuilds it from the text
        if t is type({}.keys()) or t is type({}.values()) or t is type({}.items()):
            return {"$": t.__name__, "v": self._seq(list(x))}
        if isinstance(x, tuple) and hasattr(t, "_fields") and t.__module__ != "builtins":
            return {"$": "tuple", "v": self._seq(tuple.__iter__(x))}  # a named tuple
        if t is type and getattr(builtins, x.__name__, None) is x:
            return {"$": "type", "v": x.__name__}  # int, str, list... as an argument
        ref = self.ref_of(x)
        if ref is not None:
            return {"$": "ref", "v": ref}
        kind = self.node_kind(x)
        if kind is not None:
            return {"$": "node", "v": self._node(x, kind)}
        if _is_iterator(x):
            return {"$": "iter", "v": self._seq(_drain(x))}
        raise WireError(f"a value of type {t.__module__}.{t.__qualname__} is not a builtin type")

    def _seq(self, items) -> list:
        key = id(items)
        if key in self._open:
            raise WireError("a container that contains itself")
        self._open.add(key)
        try:
            return [self.encode(v) for v in items]
        finally:
            self._open.discard(key)

    def _pairs(self, d) -> list:
        key = id(d)
        if key in self._open:
            raise WireError("a dict that contains itself")
        self._open.add(key)
        try:
            return [[self.encode(k), self.encode(v)] for k, v in dict.items(d)]
        finally:
            self._open.discard(key)

    def _node(self, root, kind: str) -> int:
        """Index of ``root`` in the node table, adding every node it reaches (iteratively:
        a 100k-node list must not hit the recursion limit)."""
        if id(root) in self._node_ids:
            return self._node_ids[id(root)]
        links = ("left", "right") if kind == "T" else ("next",)
        pending = [(root, kind)]
        self._index(root, kind)
        while pending:
            node, k = pending.pop()
            entry = self.nodes[self._node_ids[id(node)]]
            entry.append(self.encode(node.val))
            for name in links:
                child = getattr(node, name)
                if child is None:
                    entry.append(None)
                    continue
                ck = self.node_kind(child)
                if ck != k:
                    raise WireError(f"node.{name} is not a {'tree' if k == 'T' else 'list'} node")
                if id(child) not in self._node_ids:
                    self._index(child, ck)
                    pending.append((child, ck))
                entry.append(self._node_ids[id(child)])
        return self._node_ids[id(root)]

    def _index(self, node, kind: str) -> None:
        if len(self.nodes) >= MAX_ITEMS:
            raise WireError(f"more than {MAX_ITEMS} nodes")
        self._node_ids[id(node)] = len(self.nodes)
        self.nodes.append([kind])
        self._held.append(node)  # keeps id(node) unique while the encoder lives


def _is_iterator(x) -> bool:
    try:
        return hasattr(type(x), "__next__") and iter(x) is x
    except Exception:  # noqa: BLE001 - a broken __iter__ is simply not an iterator
        return False


def _drain(it) -> list:
    out = []
    for v in it:
        out.append(v)
        if len(out) > MAX_ITEMS:
            raise WireError(f"an iterator of more than {MAX_ITEMS} items")
    return out


class Decoder:
    """Builds fresh trusted objects from an encoded message. ``tree_cls``/``list_cls``
    build nodes; ``resolve_ref(ref)`` turns a ref into an object (None: refs refused)."""

    def __init__(self, tree_cls, list_cls, resolve_ref=None) -> None:
        self.tree_cls, self.list_cls = tree_cls, list_cls
        self.resolve_ref = resolve_ref
        self._nodes: list = []

    def message(self, msg):
        if not isinstance(msg, dict):
            raise WireError("a message is a JSON object")
        self._nodes = self._build_nodes(msg.get("n") or [])
        return self.decode(msg.get("v"))

    def decode(self, x):
        t = type(x)
        if x is None or t in (bool, str, int, float):
            return x
        if t is list:
            return [self.decode(v) for v in x]
        if t is not dict or not isinstance(x.get("$"), str):
            raise WireError(f"unexpected JSON {t.__name__}")
        tag, v = x["$"], x.get("v")
        try:
            return self._tagged(tag, v)
        except WireError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, ArithmeticError) as e:
            raise WireError(f"bad {tag!r} value: {e}") from None

    def _tagged(self, tag: str, v):
        if tag == "int":
            return int(_str(v), 16)
        if tag == "tuple":
            return tuple(self._list(v))
        if tag in ("dict", "Counter", "OrderedDict"):
            cls = {"dict": dict, "Counter": collections.Counter, "OrderedDict": collections.OrderedDict}[tag]
            out = cls()
            for pair in self._list(v):
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("a dict entry is a [key, value] pair")
                out[pair[0]] = pair[1]
            return out
        if tag in ("set", "frozenset", "deque"):
            return {"set": set, "frozenset": frozenset, "deque": collections.deque}[tag](self._list(v))
        if tag in ("bytes", "bytearray"):
            return {"bytes": bytes, "bytearray": bytearray}[tag](_str(v).encode("latin-1"))
        if tag == "complex":
            re_, im = self._list(v)
            return complex(float(re_), float(im))
        if tag == "range":
            a, b, c = (_int(n) for n in self._list(v))
            return range(a, b, c)
        if tag == "Decimal":
            import decimal  # lazily: most runs never need it

            return decimal.Decimal(_str(v))
        if tag == "Fraction":
            import fractions

            return fractions.Fraction(_str(v))
        if tag == "dict_keys":
            return dict.fromkeys(self._list(v)).keys()
        if tag == "dict_values":
            return dict(enumerate(self._list(v))).values()
        if tag == "dict_items":
            return dict(tuple(p) for p in self._list(v)).items()
        if tag == "type":
            cls = getattr(builtins, _str(v), None)
            if not isinstance(cls, type):
                raise WireError(f"no builtin type {v!r}")
            return cls
        if tag == "iter":
            return iter(self._list(v))
        if tag == "node":
            if type(v) is not int or not 0 <= v < len(self._nodes):
                raise WireError("a node index out of range")
            return self._nodes[v]
        if tag == "ref" and self.resolve_ref is not None:
            return self.resolve_ref(v)
        raise WireError(f"unknown tag {tag!r}")

    def _list(self, v) -> list:
        if type(v) is not list:
            raise WireError("expected a JSON array")
        return [self.decode(item) for item in v]

    def _build_nodes(self, table) -> list:
        if type(table) is not list or len(table) > MAX_ITEMS:
            raise WireError("a node table is a list")
        nodes = []
        for entry in table:
            kind = entry[0] if type(entry) is list and entry and type(entry[0]) is str else None
            width = {"T": 4, "L": 3}.get(kind or "")
            if width is None or len(entry) != width:
                raise WireError("a bad node table entry")
            nodes.append((self.tree_cls if entry[0] == "T" else self.list_cls)())
        self._nodes = nodes
        for node, entry in zip(nodes, table):
            node.val = self.decode(entry[1])
            names = ("left", "right") if entry[0] == "T" else ("next",)
            for name, link in zip(names, entry[2:]):
                if link is not None and (type(link) is not int or not 0 <= link < len(nodes)
                                         or table[link][0] != entry[0]):  # fmt: skip
                    raise WireError("a bad node link")
                setattr(node, name, None if link is None else nodes[link])
        return nodes


def _str(v) -> str:
    if type(v) is not str:
        raise WireError("expected a string")
    return v


def _int(v) -> int:
    if type(v) is not int:
        raise WireError("expected an int")
    return v


def dumps(msg: dict) -> bytes:
    """One message as one line of ASCII JSON."""
    return json.dumps(msg, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"
