"""What grading passes between processes and keeps: the limits, a task, a cell's score, a record.

A worker writes each :class:`Record` to :func:`result_path` last and atomically: the
resume state of a class (:mod:`autograder.grading.batch`), and what the feedback,
``grades.csv`` and the class hub's exchange read.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.cells import ANSI
from autograder.labs import json_dump


def result_path(out: Path, student: str, lab: str) -> Path:
    """Where a submission's record lives in a grading folder."""
    return Path(out) / "results" / student / f"{lab}.json"


RESULT_PREFIX = "@@RLHF-RESULT@@ "


@dataclass
class Settings:
    """Grading limits (the CLI's options, the one place their defaults live); part of the resume key."""

    cell_timeout: int = field(default=120, metadata={"help": "seconds each cell may run"})
    budget: int = field(default=900, metadata={"help": "seconds a whole submission may run"})
    memory_mb: int = field(default=4096, metadata={"help": "memory (address-space) cap per kernel, MiB"})
    sandbox: bool = field(default=True, metadata={"help": "run kernels in bubblewrap (False: no isolation)"})
    jobs: int = field(default=1, metadata={"help": "submissions graded at once"})

    def key(self) -> str:
        d = asdict(self)
        d.pop("jobs")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Task:
    """One submission to grade: what the parent sends a worker."""

    id: int
    student: str
    lab: str
    notebook: str
    course: str
    out: str
    settings: Settings
    submission_sha256: str
    source_sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Task:
        data = json.loads(line)
        data["settings"] = Settings(**data["settings"])
        return cls(**data)

    @property
    def result_path(self) -> Path:
        return result_path(Path(self.out), self.student, self.lab)


@dataclass
class CellScore:
    """Points of one graded cell: ``kind`` is ``test`` (auto-graded) or ``written`` (by hand)."""

    grade_id: str
    kind: str
    max: float
    score: float | None = None
    pending: bool = False


@dataclass
class Record:
    """The result of grading one submission: a row of grades.csv, and the resume state."""

    student_id: str
    lab_id: str
    status: str = "graded"
    cells: list[CellScore] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    submission_sha256: str = ""
    source_sha256: str = ""
    settings: str = ""
    auto_score: float | None = None
    auto_max: float = 0.0
    pending_max: float = 0.0
    total: float | None = None
    max_score: float = 0.0
    seconds: float = 0.0

    @property
    def graded(self) -> bool:
        return self.status == "graded"

    def is_for(self, submission_sha256: str, source_sha256: str | None = None, settings: str | None = None) -> bool:
        """Made from exactly this submission (and, where given, this lab source and these limits)?
        The one test before an earlier record is kept, merged or returned: never a stale score."""
        return (self.submission_sha256 == submission_sha256
                and (source_sha256 is None or self.source_sha256 == source_sha256)
                and (settings is None or self.settings == settings))

    def finish(self, start: float) -> Record:
        """Fill in the totals (none for a submission that could not be graded) and the time taken."""
        auto = [c for c in self.cells if c.kind == "test"]
        self.auto_max = sum(c.max for c in auto)
        self.auto_score = sum(c.score or 0.0 for c in auto) if self.graded else None
        self.pending_max = sum(c.max for c in self.cells if c.kind == "written" and c.pending)
        self.max_score = sum(c.max for c in self.cells)
        self.total = sum(c.score or 0.0 for c in self.cells) if self.graded else None
        self.seconds = round(time.perf_counter() - start, 2)
        return self

    @classmethod
    def failed(cls, student: str, lab: str, why: str, start: float | None = None) -> Record:
        """A submission the grader could not grade: ``status=error``, no score."""
        return cls(student, lab, status="error", notes=[why]).finish(time.perf_counter() if start is None else start)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        json_dump(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Record:
        data = json.loads(path.read_text())
        data["cells"] = [CellScore(**c) for c in data.get("cells", [])]
        return cls(**data)


def first_line(text: object, limit: int = 240) -> str:
    text = ANSI.sub("", str(text)).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
