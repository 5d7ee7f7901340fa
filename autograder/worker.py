"""Grade one submission, in a worker process: ``python -m autograder.worker``.

The parent (:mod:`autograder.grading`) sends one :class:`Task` per line on
stdin. The worker grades it with :func:`grade_submission`, writes the
:class:`Record` to ``<out>/results/<student>/<lab>.json`` last and atomically
(the resume state), and answers with one line on stdout. A worker imports
nbgrader once (about 5 s) and then grades task after task.

:func:`grade_submission`, step by step:

1. :func:`read_submission` and :func:`repair` make the notebook gradeable
   (invalid JSON scores 0 with the reason; deleted, renamed or edited test
   and locked cells are put back);
2. :func:`_autograde` runs nbgrader's ``Autograde`` with
   :class:`~autograder.preprocessors.SandboxExecute`: the kernel runs in the
   bubblewrap box with per-cell limits and observes; each test is judged here
   (:mod:`autograder.judge`);
3. :func:`_read_scores` reads the gradebook and says why points were lost;
4. :func:`_feedback` writes the learner's feedback without hidden tests.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from rlhf_helpers.observations import TRIPWIRES_ENV

from . import answer_key as AK
from . import course as C
from .sandbox import CONFIG_ENV, SandboxConfig

RESULT_PREFIX = "@@RLHF-RESULT@@ "
HINT = "\nHint: "
MAX_LEARNER_FILE = 50 * 2**20
"""Largest file beside a learner's notebook that is copied for grading (bytes)."""


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
        return Path(self.out) / "results" / self.student / f"{self.lab}.json"


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
        C.json_dump(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Record:
        data = json.loads(path.read_text())
        data["cells"] = [CellScore(**c) for c in data.get("cells", [])]
        return cls(**data)


# =========================================================================== reading a submission

def first_line(text: object, limit: int = 240) -> str:
    text = C.ANSI.sub("", str(text)).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def learner_files(folder: Path) -> list[Path]:
    """The learner's own files beside their notebook that grading copies (data they made): plain
    files under :data:`MAX_LEARNER_FILE`, never another notebook, never a symbolic link (it could
    point at another student's work)."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir())
            if p.is_file() and not p.is_symlink() and p.suffix != ".ipynb" and p.stat().st_size < MAX_LEARNER_FILE]


def read_submission(path: Path):
    """(notebook, None) or (None, why it cannot be graded)."""
    if path.is_symlink():
        return None, f"{path.name} is a symbolic link, not a notebook file"
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob("*.ipynb")) if path.parent.is_dir() else []
        found = f" (found: {', '.join(others)})" if others else ""
        return None, f"no {path.name} in the submission{found}"
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"the notebook is not UTF-8 text ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"the notebook is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); was it saved completely?"
    try:
        with warnings.catch_warnings():  # cells without ids (older frontends) are fine: nbformat adds them
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(data), as_version=4)
            nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - any malformed notebook is graded 0 with the reason
        return None, f"the file is JSON but not a valid notebook ({first_line(getattr(exc, 'message', exc))})"
    return nb, None


def _kind(cell) -> str:
    if nbutils.is_grade(cell):
        return "written answer" if nbutils.is_solution(cell) else "test cell"
    return "solution cell" if nbutils.is_solution(cell) else "locked cell"


def _graded_ids(nb) -> dict[str, int]:
    return {c.metadata.nbgrader["grade_id"]: i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata}


def repair(nb, released, notes: list[str]):
    """Make the submission gradeable against the released copy: unknown graded ids lose their
    grading metadata, missing graded or locked cells come back, and edits to locked cells are
    noted (nbgrader's OverwriteCells restores them)."""
    rel_cells = [c for c in released.cells if "nbgrader" in c.metadata]
    rel_ids = {c.metadata.nbgrader["grade_id"]: c for c in rel_cells}
    seen: set[str] = set()
    for cell in nb.cells:
        if not cell.metadata.get("nbgrader"):
            continue
        gid = cell.metadata.nbgrader.get("grade_id")
        if gid not in rel_ids or gid in seen:
            notes.append(f"cell {gid!r} is not a cell of this lab (renamed?): graded as an ordinary cell"
                         if gid not in rel_ids else f"cell {gid!r} appears twice: the copy is graded as an ordinary cell")
            del cell.metadata["nbgrader"]
            continue
        seen.add(gid)
        ref = rel_ids[gid]
        if cell.cell_type != ref.cell_type:
            notes.append(f"cell {gid!r} changed type: restored from the lab")
        elif nbutils.is_locked(ref) and cell.source.strip() != ref.source.strip():
            notes.append(f"{'test cell' if nbutils.is_grade(ref) else 'locked cell'} {gid!r} was edited: the original was restored")
    # Put back what is missing, after the nearest earlier graded/locked cell that is present.
    index_of = _graded_ids(nb)
    for pos, ref in enumerate(rel_cells):
        gid = ref.metadata.nbgrader["grade_id"]
        if gid in index_of:
            continue
        blank = " (blank)" if nbutils.is_solution(ref) else ""
        notes.append(f"{_kind(ref)} {gid!r} was missing (deleted or renamed): restored from the lab{blank}")
        anchor = next((index_of[r.metadata.nbgrader["grade_id"]] for r in reversed(rel_cells[:pos])
                       if r.metadata.nbgrader["grade_id"] in index_of), -1)
        nb.cells.insert(anchor + 1, nbformat.from_dict(json.loads(json.dumps(ref))))
        index_of = _graded_ids(nb)
    return nb


# =========================================================================== the gradebook

def _gradebook(course: Path):
    from nbgrader.api import Gradebook

    return Gradebook(C.db_url(course), "rlhf-course")


def register_students(course: Path, students: list[str]) -> None:
    """Add the class's students to the gradebook before any worker starts: two workers grading
    one learner's two labs at once would otherwise both create the student, and one would fail
    (sqlite3.IntegrityError: UNIQUE constraint failed: student.id)."""
    if not students:
        return
    with _gradebook(course) as gb:
        for student in sorted(set(students)):
            gb.update_or_create_student(student)


def forget(course: Path, lab: str, student: str) -> None:
    """Remove a submission's old grades, so a failure can never leave a stale score."""
    from nbgrader.api import MissingEntry

    with _gradebook(course) as gb:
        try:
            gb.remove_submission(lab, student)
        except MissingEntry:
            pass


def _record_zero(course: Path, lab: str, student: str) -> None:
    """A submission that cannot be run: every graded cell scores 0 in the gradebook."""
    with _gradebook(course) as gb:
        gb.update_or_create_student(student)
        sub = gb.update_or_create_submission(lab, student)
        for nb in sub.notebooks:
            for grade in nb.grades:
                grade.auto_score = 0.0
                grade.needs_manual_grade = False
        gb.db.commit()


def _scores(course: Path, lab: str, student: str) -> dict[str, dict]:
    with _gradebook(course) as gb:
        sub = gb.find_submission(lab, student)
        return {g.name: {"auto": g.auto_score, "manual": g.manual_score, "score": g.score}
                for nb in sub.notebooks for g in nb.grades}


def cell_kinds(source_nb) -> list[tuple[str, str, float]]:
    """(grade_id, 'test' | 'written', points) for every graded cell, in order."""
    return [(c.metadata.nbgrader["grade_id"], "written" if nbutils.is_solution(c) else "test",
             float(c.metadata.nbgrader.get("points", 0))) for c in source_nb.cells if nbutils.is_grade(c)]


# =========================================================================== one submission

@dataclass
class _Lab:
    """What grading a submission of one lab needs from its source and released copy."""

    name: str
    source: nbformat.NotebookNode
    released: nbformat.NotebookNode
    kinds: list[tuple[str, str, float]]
    secrets: list[str]

    @classmethod
    def load(cls, course: Path, lab: str) -> _Lab:
        source = nbformat.read(course / "source" / lab / f"{lab}.ipynb", as_version=4)
        released = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
        return cls(lab, source, released, cell_kinds(source), C.secret_lines(source, released))


def grade_submission(task: Task) -> Record:
    """Grade ``task.notebook`` as ``task.student``'s ``task.lab``; returns its record.

    Never raises for a bad submission; raises only when the grader itself is broken
    (and then the worker records ``status=error``)."""
    start = time.perf_counter()
    course, out = Path(task.course), Path(task.out)
    lab = _Lab.load(course, task.lab)
    dirs = {k: course / k / task.student / task.lab for k in ("submitted", "autograded", "feedback")}
    feedback_out = out / "feedback" / task.student / f"{task.lab}.html"
    for stale in dirs.values():
        shutil.rmtree(stale, ignore_errors=True)
    feedback_out.unlink(missing_ok=True)
    forget(course, task.lab, task.student)
    record = Record(task.student, task.lab, submission_sha256=task.submission_sha256,
                    source_sha256=task.source_sha256, settings=task.settings.key())
    nb, why = read_submission(Path(task.notebook))
    if nb is None:
        record.notes.append(why)
        _record_zero(course, task.lab, task.student)
        _simple_feedback(feedback_out, task.student, task.lab, why, sum(k[2] for k in lab.kinds))
        record.cells = [CellScore(g, k, p, 0.0) for g, k, p in lab.kinds]
        return record.finish(start)
    nb = repair(nb, lab.released, record.notes)
    own = C.norm_text("\n".join(cell.source for cell in nb.cells))
    secrets = [s for s in lab.secrets if s not in own]  # a hidden-test line the learner also wrote is theirs to see
    dirs["submitted"].mkdir(parents=True)
    for extra in learner_files(Path(task.notebook).parent):
        shutil.copy2(extra, dirs["submitted"] / extra.name)
    nbformat.write(nb, dirs["submitted"] / f"{task.lab}.ipynb")
    try:
        events, record.provenance = _autograde(task, lab, dirs["submitted"])
    except Exception as exc:  # noqa: BLE001 - reported as status=error, never a score
        forget(course, task.lab, task.student)
        record.status = "error"
        record.notes.append(f"the grader failed on this submission ({type(exc).__name__}: {first_line(exc)}); "
                            f"see the worker log in {out / 'logs'}")
        return record.finish(start)
    _read_scores(record, task, lab, events, secrets)
    _feedback(record, task, lab, secrets, feedback_out)
    return record.finish(start)


def _scratch(scratch: Path, submitted: Path, source_dir: Path) -> tuple[Path, Path]:
    """The kernel's working copy (the learner's files, then the lab's own data, which win) and
    the folder of its sockets; only these two are bound into the box."""
    work, ipc = scratch / "work", scratch / "ipc"
    work.mkdir()
    ipc.mkdir()
    for extra in submitted.iterdir():
        if extra.suffix != ".ipynb":
            shutil.copy2(extra, work / extra.name)
    for extra in source_dir.rglob("*"):
        if extra.is_file() and extra.suffix != ".ipynb":
            dst = work / extra.relative_to(source_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(extra, dst)
    return work, ipc


def _autograde(task: Task, lab: _Lab, submitted: Path) -> tuple[list[dict], dict]:
    """Run nbgrader's Autograde on the stored submission with the kit's sandboxed, judged
    execution; returns the execution events (timeouts, deaths, cells not run) and the
    provenance of the graded functions (:mod:`autograder.provenance`)."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput
    from nbconvert.preprocessors import ClearMetadataPreprocessor

    from .preprocessors import SandboxExecute, StrictSaveAutoGrades

    course, settings = Path(task.course), task.settings
    listed = AK.equivalents(lab.source)
    equivalents = wired_equivalents(listed)
    with tempfile.TemporaryDirectory(prefix="rg-") as tmp:  # short path: Unix sockets allow ~100 chars
        scratch = Path(tmp)
        work, ipc = _scratch(scratch, submitted, course / "source" / task.lab)
        # The config and the kernel log stay outside every folder bound into the box.
        manifest_path = course / "box" / task.lab / AK.MANIFEST
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        wires = sorted({_CANONICAL.get(p) or p for paths in listed.values() for p in paths}
                       | set(manifest.get("wires", [])))
        SandboxConfig(work_dir=str(work), ipc_dir=str(ipc), log_path=str(scratch / "kernel.log"),
                      memory_mb=settings.memory_mb, enabled=settings.sandbox,
                      threads=max(1, (os.cpu_count() or 1) // max(1, settings.jobs)),
                      overlays=box_overlays(course, task.lab), env={TRIPWIRES_ENV: json.dumps(wires)},
                      hide=[task.out, str(Path(task.notebook).parents[2]), str(C.repo_root() / "solutions")],
                      ).save(scratch / "sandbox.json")
        os.environ[CONFIG_ENV] = str(scratch / "sandbox.json")
        c = C.base_config(course)
        c.CourseDirectory.student_id, c.CourseDirectory.assignment_id = task.student, task.lab
        c.Autograde.force = c.Autograde.create_student = True
        c.Autograde.autograde_preprocessors = [SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                               StrictSaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        c.SandboxExecute.update(timeout=settings.cell_timeout, budget=float(settings.budget),
                                events_path=str(scratch / "events.json"), memory_mb=settings.memory_mb,
                                kernel_log=str(scratch / "kernel.log"), tests=AK.test_sources(lab.source),
                                learner_names=AK.learner_names(lab.source), equivalents=equivalents,
                                provenance_path=str(scratch / "provenance.json"),
                                handed_out=[".".join(pair) for pair in manifest.get("handed_out", [])],
                                given=[c.source for c in lab.released.cells if c.cell_type == "code"],
                                skip=[c.source for c in lab.source.cells if C.skipped_while_grading(c)])
        c.KernelManager.transport = "ipc"
        c.KernelManager.ip, c.KernelManager.connection_file = str(ipc / "k"), str(ipc / "kernel.json")
        C.quiet_nbgrader()
        converter = Autograde(coursedir=CourseDirectory(config=c), config=c)
        converter.log.setLevel(logging.WARNING)
        converter.start()
        events_path = scratch / "events.json"
        provenance_path = scratch / "provenance.json"
        provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {}
        return (json.loads(events_path.read_text()) if events_path.exists() else []), provenance


_CANONICAL: dict[str, str | None] = {}
"""Dotted path -> ``module:qualname`` where it is defined (autograder.equivalents.canonical), per worker."""


def wired_equivalents(equivalents: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each graded name's equivalents, also under the names the kernel reports them by: where each is
    defined (the kernel wires it as that module loads, so a reference taken early is wired too)."""
    from .equivalents import canonical

    out = {}
    for name, paths in equivalents.items():
        more = []
        for path in paths:
            if path not in _CANONICAL:
                _CANONICAL[path] = canonical(path)
            if _CANONICAL[path]:
                more.append(_CANONICAL[path].replace(":", "."))
        out[name] = list(dict.fromkeys(paths + more))
    return out


def kit_package() -> Path | None:
    """The real helper package (outside any box), or None when the grader runs without it."""
    try:
        import rlhf_helpers
    except ImportError:  # the grader can grade labs that do not use the helpers
        return None
    return Path(rlhf_helpers.__file__).resolve().parent


def box_overlays(course: Path, lab: str) -> list[list[str]]:
    """The sandbox sees the helper package without ``lab``'s answer key (and the real world on top)."""
    package, box = kit_package(), course / "box" / lab / "rlhf_helpers"
    if package is None or not box.is_dir():
        return []
    overlays = [[str(box), str(package)]]
    if (package / "world").is_dir():
        overlays.append([str(package / "world"), str(package / "world")])
    return overlays


def _why(cell, settings: Settings, secrets: list[str]) -> str | None:
    """Why a judged test cell lost its points (None when it passed)."""
    from .preprocessors import DIED_ENAME, NOT_RUN_ENAME, TIMEOUT_ENAME

    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    ours = [o for o in errors if o.get("ename") in (TIMEOUT_ENAME, DIED_ENAME, NOT_RUN_ENAME)]
    if not (ours or errors):
        return None
    e = (ours or errors)[0]  # a timeout's KeyboardInterrupt is not the story
    full = C.ANSI.sub("", str(e.get("evalue", "")))
    ename, evalue = e.get("ename"), first_line(full)
    if HINT in full and not evalue.startswith("Hint: "):
        evalue += " | Hint: " + first_line(full.split(HINT, 1)[1])
    if C.leaks(evalue, secrets):
        evalue = "(message withheld: it quotes a hidden test)"
    if ename == "NotImplementedError":
        return "not answered (the function still raises NotImplementedError)"
    if ename == "MemoryError" or "can't allocate memory" in evalue:
        return f"{ename}: ran out of memory (the cap is {settings.memory_mb} MiB)"
    if ename in (TIMEOUT_ENAME, DIED_ENAME, NOT_RUN_ENAME):
        return evalue
    return f"{ename}: {evalue}" if evalue else str(ename)


def _read_scores(record: Record, task: Task, lab: _Lab, events: list[dict], secrets: list[str]) -> None:
    """The gradebook's scores into ``record``, with a note for every point lost and every event."""
    course = Path(task.course)
    graded_nb = nbformat.read(course / "autograded" / task.student / task.lab / f"{task.lab}.ipynb", as_version=4)
    by_id = {c.metadata.nbgrader["grade_id"]: c for c in graded_nb.cells if "grade_id" in c.metadata.get("nbgrader", {})}
    for ev in events:
        if ev["kind"] in ("timeout", "died") and not ev.get("grade_id"):
            what = "timed out" if ev["kind"] == "timeout" else "the kernel died"
            record.notes.append(f"cell {ev['cell']}: {what} ({ev['detail']})")
    not_run = [ev for ev in events if ev["kind"] == "not_run"]
    if not_run:
        record.notes.append(f"{len(not_run)} cell(s) not run: {not_run[0]['detail']}")
    scores = _scores(course, task.lab, task.student)
    for gid, kind, points in lab.kinds:
        s = scores.get(gid, {})
        pending = kind == "written" and s.get("auto") is None and s.get("manual") is None
        record.cells.append(CellScore(gid, kind, points, None if pending else float(s.get("score") or 0.0), pending))
        cell = by_id.get(gid)
        if cell is None:
            continue
        if kind == "test":
            why = _why(cell, task.settings, secrets)
            if why:
                record.notes.append(f"{gid}: {why}")
            elif any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.get("outputs", [])):
                record.notes.append(f"{gid}: passed; it wrote to stderr, which does not cost points")
        elif kind == "written" and s.get("auto") == 0 and not pending:
            record.notes.append(f"{gid}: written answer left blank")


# =========================================================================== feedback

def html_text(page: str) -> str:
    """The visible text of an HTML page (tags dropped, entities decoded)."""
    page = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _simple_feedback(path: Path, student: str, lab: str, why: str, max_score: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{lab}: feedback</title></head><body>"
        "<h1>{lab}: feedback for {student}</h1><p><b>Score: 0 / {mx:g}</b></p>"
        "<p>Your notebook could not be graded: {why}.</p>"
        "<p>Open it in JupyterLab, check that it saves and runs, and submit it again.</p></body></html>".format(
            lab=html.escape(lab), student=html.escape(student), mx=max_score, why=html.escape(why)))


def _feedback(record: Record, task: Task, lab: _Lab, secrets: list[str], feedback_out: Path) -> None:
    """nbgrader's feedback with hidden tests removed, checked once more on the rendered page."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import GetGrades

    from .preprocessors import HideHiddenTests

    course = Path(task.course)
    feedback_dir = course / "feedback" / task.student / task.lab
    c = C.base_config(course)
    c.CourseDirectory.student_id, c.CourseDirectory.assignment_id = task.student, task.lab
    c.GenerateFeedback.force = True
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
    c.HideHiddenTests.hidden = {gid: True for gid in C.hidden_sections(lab.source)}
    c.HideHiddenTests.secrets = secrets
    try:
        fb = GenerateFeedback(coursedir=CourseDirectory(config=c), config=c)
        fb.log.setLevel(logging.WARNING)
        fb.start()
        page = (feedback_dir / f"{task.lab}.html").read_text()
        if C.leaks(html_text(page), secrets):
            raise RuntimeError("the feedback page would quote a hidden test; it was not written")
        feedback_out.parent.mkdir(parents=True, exist_ok=True)
        feedback_out.write_text(page)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(feedback_dir, ignore_errors=True)
        record.status = "error"
        record.notes.append(f"feedback could not be made ({type(exc).__name__}: {first_line(exc)})")


# =========================================================================== the worker process

def stop_with_parent(poll_s: float = 0.2) -> None:
    """Stop this worker (and its process group) once the process that started it is gone.

    The grader starts each worker in its own session, so a grader killed mid-class would
    otherwise leave the worker grading on, writing into the class's folder beside the
    re-run that resumes it. (Not ``PR_SET_PDEATHSIG``: that fires when the *thread* that
    started the worker ends, and the grader restarts workers from short-lived threads.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        if os.getpgid(0) == os.getpid():  # started by the grader: its own group, the kernel's bwrap in it
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def main() -> int:
    """A worker: one task per stdin line, one result line per task on stdout."""
    stop_with_parent()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    import nbgrader.converters  # noqa: F401 - import (about 5 s) while the parent prepares the course

    try:  # the judge's references need them: import while the parent is still preparing, not per lab
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:  # a grader for labs that need neither
        pass

    for line in sys.stdin:
        task = Task.from_json(line)
        try:
            record = grade_submission(task)
        except Exception as exc:  # noqa: BLE001 - the parent records status=error
            import traceback

            traceback.print_exc()
            record = Record.failed(task.student, task.lab, f"the grader failed ({type(exc).__name__}: {first_line(exc)})")
        record.save(task.result_path)
        sys.stdout.write(RESULT_PREFIX + json.dumps({"id": task.id}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
