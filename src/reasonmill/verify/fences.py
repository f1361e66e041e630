"""Fenced code blocks of a Markdown-ish text, found by one linear scan.

Why not a regex: the former pattern (``^[ \\t]*(```+|~~~+)...\\n(.*?)^[ \\t]*\\1...``) scans
the rest of the text for a closing fence from every opening line and retries every
shorter fence length, so a looping model's 160 KB of repeated or unclosed fences took
minutes, in the driver, with no timeout. This scan gives the same blocks in
O(n log n): each line is classified once, and the closing fence of an opening line is
looked up in an index of closing lines.

The rules (those of the former regex, kept so verdicts do not change):

- An opening line is ``[ \\t]*`` then a run of at least three backticks or three tildes,
  and must end with a newline. Its tag is the text after the run and any spaces or tabs,
  up to the first whitespace or backtick (empty when there is none).
- A block of an opening run of ``n`` fence characters closes at the first later line
  that is ``[ \\t]*``, exactly ``k`` of the same character, ``[ \\t]*`` and an optional
  ``\\r``, where ``k`` is the largest length in ``n, n-1, ..., 3`` that has such a line
  after the opening. A shorter ``k`` than ``n`` leaves the rest of the run in the tag
  (empty for backticks, which cannot be part of a tag).
- An opening line with no closing line is not a block; the scan goes on with the next
  line. After a block the scan goes on after its closing line.
- Lines are split at ``\\n`` only. The body is the text between the opening line's
  newline and the start of the closing line (so it keeps its last newline).
"""

from __future__ import annotations

from bisect import bisect_right

FENCE_CHARS = "`~"
MIN_FENCE = 3


def _opening(line: str) -> tuple[str, int, int] | None:
    """``(char, run length, run start)`` when ``line`` opens a fence, else None."""
    start = len(line) - len(line.lstrip(" \t"))
    if start >= len(line) or line[start] not in FENCE_CHARS:
        return None
    char = line[start]
    end = start
    while end < len(line) and line[end] == char:
        end += 1
    n = end - start
    return (char, n, start) if n >= MIN_FENCE else None


def _closing(line: str) -> tuple[str, int] | None:
    """``(char, length)`` when ``line`` can close a fence of exactly that length."""
    if line.endswith("\r"):
        line = line[:-1]
    core = line.strip(" \t")
    if len(core) < MIN_FENCE or core[0] not in FENCE_CHARS or core.count(core[0]) != len(core):
        return None
    return core[0], len(core)


def _tag(line: str, at: int) -> str:
    """From ``at``: skip spaces and tabs, then the run of characters that are neither
    whitespace nor a backtick."""
    while at < len(line) and line[at] in " \t":
        at += 1
    end = at
    while end < len(line) and not line[end].isspace() and line[end] != "`":
        end += 1
    return line[at:end]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(tag, body)`` of every fenced code block of ``text``, in order of appearance."""
    lines = text.split("\n")
    starts = [0] * (len(lines) + 1)  # offset of each line; one past the end for the last
    for i, line in enumerate(lines):
        starts[i + 1] = starts[i] + len(line) + 1
    closers: dict[tuple[str, int], list[int]] = {}  # (char, length) -> line numbers, ascending
    for i, line in enumerate(lines):
        key = _closing(line)
        if key is not None:
            closers.setdefault(key, []).append(i)
    blocks: list[tuple[str, str]] = []
    i = 0
    last = len(lines) - 1  # the last line has no newline: it cannot open a block
    while i < last:
        opening = _opening(lines[i])
        if opening is None:
            i += 1
            continue
        char, n, run_start = opening
        close = None
        for k in range(n, MIN_FENCE - 1, -1):
            at = closers.get((char, k))
            if at:
                j = bisect_right(at, i)
                if j < len(at):
                    close = (k, at[j])
                    break
        if close is None:
            i += 1
            continue
        k, j = close
        blocks.append((_tag(lines[i], run_start + k), text[starts[i + 1] : starts[j]]))
        i = j + 1
    return blocks
