"""Where the labs live, and files written so a killed process leaves none half-written."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


ALONE_BUDGET_S = 60
"""Seconds a lab may take top to bottom on 2 cores (the benchmark holds every lab to its budget)."""
LONG_LABS = {"lab7": 120, "lab9": 120}
"""Labs (by their number prefix) with a longer budget than ALONE_BUDGET_S."""


def budget(lab: str) -> float:
    """The seconds ``lab`` may take top to bottom on 2 cores."""
    return next((s for prefix, s in LONG_LABS.items() if lab.startswith(prefix + "_")), ALONE_BUDGET_S)


def repo_root() -> Path:
    """The kit's checkout: the folder holding ``autograder/`` (for the default paths)."""
    return Path(__file__).resolve().parent.parent


def default_solutions_dir() -> Path:
    """``./solutions`` when the working directory has one, else the kit's own."""
    here = Path.cwd() / "solutions"
    return here if here.is_dir() else repo_root() / "solutions"


def find_labs(solutions: Path) -> list[str]:
    """Lab ids with a source notebook ``solutions/<lab>/<lab>.ipynb``, sorted."""
    if not solutions.is_dir():
        return []
    return sorted(p.name for p in solutions.iterdir() if (p / f"{p.name}.ipynb").is_file())


def source_notebook(solutions: Path, lab: str) -> Path:
    path = solutions / lab / f"{lab}.ipynb"
    if not path.is_file():
        known = ", ".join(find_labs(solutions)) or "none"
        raise FileNotFoundError(f"no source notebook {path} (labs in {solutions}: {known})")
    return path


def tree_digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of every file in ``folder`` (sorted)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def json_dump(path: Path, data) -> None:
    """Write JSON atomically (a killed grader never leaves half a file)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
