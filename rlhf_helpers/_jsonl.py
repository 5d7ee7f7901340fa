"""JSON Lines files that lab 8 keeps (labels, a class's preferences), read forgivingly.

Private to the package (the labs do not import it). A label file is appended
to by hand-held kernels that can be killed mid-write, and a class's files come
from many machines: one bad line (cut short, not JSON, not valid UTF-8, not the
record expected) is reported with its file and line number and skipped, never
the lines after it, and never the whole file.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["now", "read_json_lines", "skipped"]


def now() -> str:
    """The time of a record: UTC, to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_json_lines(path: Path, check: Callable[[Any], str | None]) -> tuple[list[Any], list[str]]:
    """The values of the lines of ``path`` that parse and that ``check`` accepts (it returns why not, or None).

    Blank lines are passed over. Bytes that are not UTF-8 are read as U+FFFD (a line they break
    is then not valid JSON), so one bad byte costs at most its line. A missing file reads as empty.

    Returns:
        ``(values, problems)``: the values in file order, and one ``"<file name> line <n>: <why>"`` per line skipped.
    """
    values: list[Any] = []
    problems: list[str] = []
    if not path.exists():
        return values, problems
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path.name} line {number}: not valid JSON ({exc.msg}): {line.strip()[:60]!r}")
                continue
            why = check(value)
            if why:
                problems.append(f"{path.name} line {number}: {why}")
                continue
            values.append(value)
    return values, problems


def skipped(path: str | Path, problems: list[str]) -> str:
    """A warning's text: how many lines of ``path`` were skipped, and why (the first ten)."""
    return f"{len(problems)} line(s) of {path} skipped:\n  " + "\n  ".join(problems[:10])
