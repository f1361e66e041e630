"""A persistent, content-addressed cache of teacher responses.

Why SQLite in WAL mode: every response is committed the moment it arrives, by a single
small transaction, so a ``kill -9`` at any moment loses only the requests still in
flight; WAL keeps those commits cheap (no fsync of the main database per write with
``synchronous=NORMAL``; a killed *process* never loses a committed transaction, only a
power loss could lose the last few) and lets readers (``reasonmill inspect``) look at
the file while a run writes to it.

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
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


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
        return None if row is None else json.loads(row[0])

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
                found[key] = json.loads(value)
        return found

    def put(self, key: str, value: dict) -> None:
        """Store and commit at once (autocommit mode): the write is durable when this returns."""
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, json.dumps(value, ensure_ascii=False), time.time()),
        )

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
