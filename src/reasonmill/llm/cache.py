"""A persistent, content-addressed cache of teacher responses.

Why SQLite in WAL mode: every response is committed before the client counts it as
done, so a ``kill -9`` at any moment loses only the requests still in flight; WAL keeps
those commits cheap (no fsync of the main database per write with
``synchronous=NORMAL``; a killed *process* never loses a committed transaction, only a
power loss could lose the last few) and lets readers (``reasonmill inspect``) look at
the file while a run writes to it. The async client commits in groups
(``put_many``: all replies that arrived within ``commit_interval``, one transaction),
because one transaction per reply was the largest client cost at hundreds of replies
per second (bench/results/generate.md); a reply waits for its group's commit before it
is returned, so it is still durable before it counts.

The key is the hash of what determines the answer: the model name, the sampling
parameters, the messages and the sample index. The base URL is left out on purpose, so
the same teacher served from another host reuses the cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1


def dumps_value(value: dict) -> str:
    """JSON text of a cache value (orjson; the json module for what orjson refuses)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:  # e.g. an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False)


def _loads(text: str) -> dict:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN/Infinity written by the json module
        return json.loads(text)


def cache_key(model: str, params: dict[str, Any], messages: list[dict], sample_index: int) -> str:
    """The content address of one (prompt, sample) request.

    ``params`` holds only sampling parameters (temperature, top_p, max_tokens, ...);
    transport details such as ``stream`` must not be in it, since they do not change
    the answer.
    """
    payload = json.dumps(
        {"v": SCHEMA_VERSION, "model": model, "params": params, "messages": messages, "sample": sample_index},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _dumps_sorted(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class RequestEncoder:
    """Cache keys and request bodies from one JSON encoding of the messages.

    ``cache_key`` encodes the messages once for the key, and the request body would
    encode them a second time. This builds both from the same sorted, compact encoding:
    the key text is assembled to be byte-identical to ``cache_key``'s (the same keys,
    so caches written before stay valid), and the body embeds the same text. The model
    and the parameters are encoded once per run.
    """

    def __init__(self, model: str, params: dict[str, Any], body_extra: dict[str, Any] | None = None):
        # cache_key's payload with sort_keys: "messages" < "model" < "params" < "sample" < "v"
        self._key_mid = ',"model":' + _dumps_sorted(model) + ',"params":' + _dumps_sorted(params) + ',"sample":'
        self._key_tail = ',"v":' + _dumps_sorted(SCHEMA_VERSION) + "}"
        body_fields = {**params, **(body_extra or {})}
        self._body_head = ('{"model":' + _dumps_sorted(model) + ',"messages":').encode("utf-8")
        self._body_tail = ("".join("," + _dumps_sorted(k) + ":" + _dumps_sorted(v) for k, v in body_fields.items()) + "}").encode("utf-8")

    @staticmethod
    def encode_messages(messages: list[dict]) -> str:
        """``json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))``.

        Plain ``{"role", "content"}`` text messages (nearly all) are assembled directly
        with the string encoder ``json.dumps`` itself uses, so the text is the same;
        anything else goes through ``json.dumps``.
        """
        parts = []
        for m in messages:
            if type(m) is dict and len(m) == 2:
                role, content = m.get("role"), m.get("content")
                if type(role) is str and type(content) is str:
                    parts.append('{"content":' + encode_basestring(content) + ',"role":' + encode_basestring(role) + "}")
                    continue
            parts.append(_dumps_sorted(m))
        return "[" + ",".join(parts) + "]"

    def key(self, encoded_messages: str, sample_index: int) -> str:
        """Equal to ``cache_key(model, params, messages, sample_index)``."""
        payload = '{"messages":' + encoded_messages + self._key_mid + str(int(sample_index)) + self._key_tail
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def body(self, encoded_messages: str) -> bytes:
        """The request body: model, messages, sampling parameters (and ``body_extra``)."""
        return self._body_head + encoded_messages.encode("utf-8") + self._body_tail


class ResponseCache:
    """Maps a cache key to a stored result (a JSON-able dict).

    Used from one thread at a time (the generate stage's event-loop thread, which may
    not be the thread that opened it). Several processes may open the same file (SQLite locks it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise RuntimeError(
                f"cannot open the LLM response cache {self.path}: {exc}. "
                "Delete the file (you will pay again for its responses) or point cache_path elsewhere."
            ) from exc

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else _loads(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """Look many keys up at once (one query per 500 keys) - used before a shard starts."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(
                f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk
            ):
                found[key] = _loads(value)
        return found

    def put(self, key: str, value: dict) -> None:
        """Store and commit at once (autocommit mode): the write is durable when this returns."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, dumps_value(value), time.time()),
        )

    def put_many(self, items: list[tuple[str, str]]) -> None:
        """Store ``(key, JSON text)`` pairs in one transaction, committed when this returns.

        All or nothing: a killed process leaves either every pair or none of them.
        """
        if not items:
            return
        now = time.time()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                [(k, v, now) for k, v in items],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def keys(self) -> list[str]:
        return [k for (k,) in self._db.execute("SELECT key FROM responses")]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
