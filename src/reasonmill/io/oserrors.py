"""I/O errors that name their file.

The OS names the file when ``open`` fails, but not when a ``write`` or a ``close`` does:
a full disk says "[Errno 28] No space left on device" and nothing else, and pyarrow's
write errors name no file either. Every writer of the engine and the exports wraps its
writes in :func:`naming`, so the message a user sees says which file (and so which disk).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` without a file name as one naming ``path``, with the same
    errno (so its class, e.g. ``PermissionError``, and ``errno == ENOSPC`` tests hold)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        if exc.errno is None:
            raise OSError(f"{exc}: {path}") from exc
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
