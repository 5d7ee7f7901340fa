"""Grade one submission (in a worker process) and a whole class (in parallel).

``grade_class`` is what ``rlhf-course grade`` and ``rlhf-course check`` run:

1. every lab that has submissions is generated into an nbgrader course folder
   (``<out>/course``) from its source, which also records its cells in the
   gradebook (SQLite with a 60 s busy timeout, shared by the workers);
2. ``--jobs N`` long-lived worker processes (``python -m autograder.grading``)
   take submissions from a queue; each worker imports nbgrader once;
3. a worker grades one submission (:func:`grade_submission`): it reads and
   repairs the notebook (invalid JSON, deleted, renamed or edited test and
   locked cells), runs nbgrader's ``Autograde`` with :class:`SandboxExecute`
   (the kernel in a bubblewrap box, per-cell time limits), writes the
   feedback HTML without hidden tests, and writes ``<out>/results/<student>/<lab>.json``
   last, atomically;
4. the parent kills a worker that overruns the submission's time budget (the
   sandboxed kernel dies with it) and grades the rest; a submission that could
   not be graded gets ``status=error`` and no score, never an old one;
5. ``grades.csv`` is written from the results of this class.

A re-run with the same ``--out`` skips submissions whose result is already
there for the same notebook, source and settings, and re-grades the rest from
scratch (their old gradebook entries are removed first), so a run that was
killed resumes without stale scores.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from rlhf_helpers.observations import TRIPWIRES_ENV

from . import answer_key as AK
from . import course as C
from . import similarity
from .sandbox import (CONFIG_ENV, INSTALL_HINT, SandboxConfig, SandboxUnavailable, bwrap_path, probe,
                      write_kernelspec)

RESULT_PREFIX = "@@RLHF-RESULT@@ "
WORKER_MARGIN_S = 180
"""Seconds a worker may take beyond a notebook's budget (kernel start, nbgrader, feedback)
before the parent kills it and records ``status=error`` for that submission."""
CSV_FIXED = ["student_id", "lab_id"]
CSV_TAIL = ["auto_score", "auto_max", "pending_max", "total", "max_score", "status", "reason", "flags"]


@dataclass
class Settings:
    """Grading limits (the CLI's options); part of the resume key."""

    cell_timeout: int = field(default=120, metadata={"help": "seconds each cell may run"})
    budget: int = field(default=900, metadata={"help": "seconds a whole submission may run"})
    memory_mb: int = field(default=4096, metadata={"help": "memory (address-space) cap per kernel, MiB"})
    sandbox: bool = field(default=True, metadata={"help": "run kernels in bubblewrap (False: no isolation)"})
    jobs: int = field(default=1, metadata={"help": "submissions graded at once"})

    def key(self) -> str:
        d = asdict(self)
        d.pop("jobs")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# =========================================================================== one submission

def _first_line(text: str, limit: int = 240) -> str:
    text = C.ANSI.sub("", str(text)).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _repair(nb, released, notes: list[str]):
    """Make the submission gradeable against the released copy: unknown graded
    ids lose their grading metadata, missing graded or locked cells come back,
    and edits to locked cells are noted (nbgrader restores them)."""
    rel_cells = [c for c in released.cells if "nbgrader" in c.metadata]
    rel_ids = {c.metadata.nbgrader["grade_id"]: c for c in rel_cells}
    seen: set[str] = set()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        gid = meta.get("grade_id")
        if gid not in rel_ids:
            notes.append(f"cell {gid!r} is not a cell of this lab (renamed?): graded as an ordinary cell")
            del cell.metadata["nbgrader"]
            continue
        if gid in seen:
            notes.append(f"cell {gid!r} appears twice: the copy is graded as an ordinary cell")
            del cell.metadata["nbgrader"]
            continue
        seen.add(gid)
        ref = rel_ids[gid]
        locked = ref.metadata.nbgrader.get("locked") or (ref.metadata.nbgrader.get("grade") and not ref.metadata.nbgrader.get("solution"))
        if cell.cell_type != ref.cell_type:
            notes.append(f"cell {gid!r} changed type: restored from the lab")
        elif locked and cell.source.strip() != ref.source.strip():
            kind = "test cell" if ref.metadata.nbgrader.get("grade") else "locked cell"
            notes.append(f"{kind} {gid!r} was edited: the original was restored")
    # Put back what is missing, after the nearest earlier graded/locked cell that is present.
    index_of = {c.metadata.nbgrader["grade_id"]: i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata}
    for pos, ref in enumerate(rel_cells):
        gid = ref.metadata.nbgrader["grade_id"]
        if gid in index_of:
            continue
        meta = ref.metadata.nbgrader
        kind = ("test cell" if meta.get("grade") and not meta.get("solution") else
                "written answer" if meta.get("grade") else
                "solution cell" if meta.get("solution") else "locked cell")
        blank = " (blank)" if meta.get("solution") else ""
        notes.append(f"{kind} {gid!r} was missing (deleted or renamed): restored from the lab{blank}")
        anchor = next((index_of[r.metadata.nbgrader["grade_id"]] for r in reversed(rel_cells[:pos])
                       if r.metadata.nbgrader["grade_id"] in index_of), -1)
        nb.cells.insert(anchor + 1, nbformat.from_dict(json.loads(json.dumps(ref))))
        index_of = {c.metadata.nbgrader["grade_id"]: i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata}
    return nb


def _read_submission(path: Path):
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
        return None, f"the file is JSON but not a valid notebook ({_first_line(getattr(exc, 'message', exc))})"
    return nb, None


def _gradebook(course: Path):
    from nbgrader.api import Gradebook

    return Gradebook(C.db_url(course), "rlhf-course")


def _forget(course: Path, lab: str, student: str) -> None:
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
        out = {}
        for nb in sub.notebooks:
            for g in nb.grades:
                out[g.name] = {"auto": g.auto_score, "manual": g.manual_score, "max": g.max_score,
                               "needs_manual": bool(g.needs_manual_grade), "score": g.score}
        return out


def _cell_kinds(source_nb) -> list[tuple[str, str, float]]:
    """(grade_id, 'test' | 'written', points) for every graded cell, in order."""
    out = []
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            out.append((meta["grade_id"], "written" if meta.get("solution") else "test", float(meta.get("points", 0))))
    return out


def _simple_feedback(path: Path, student: str, lab: str, why: str, max_score: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{lab}: feedback</title></head><body>"
        "<h1>{lab}: feedback for {student}</h1><p><b>Score: 0 / {mx:g}</b></p>"
        "<p>Your notebook could not be graded: {why}.</p>"
        "<p>Open it in JupyterLab, check that it saves and runs, and submit it again.</p></body></html>".format(
            lab=html.escape(lab), student=html.escape(student), mx=max_score, why=html.escape(why)))


def html_text(page: str) -> str:
    """The visible text of an HTML page (tags dropped, entities decoded)."""
    page = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def grade_submission(task: dict) -> dict:
    """Grade ``task['notebook']`` as ``task['student']``'s ``task['lab']``; returns the result record.

    Runs in a worker process. Never raises for a bad submission; raises only
    when the grader itself is broken (and then the result is ``status=error``)."""
    from nbgrader.converters import Autograde, GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, GetGrades, IgnorePattern, LimitOutput
    from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor

    from .preprocessors import DIED_ENAME, NOT_RUN_ENAME, TIMEOUT_ENAME, HideHiddenTests, SandboxExecute, StrictSaveAutoGrades

    start = time.perf_counter()
    student, lab = task["student"], task["lab"]
    course, out = Path(task["course"]), Path(task["out"])
    settings = Settings(**task["settings"])
    src_path = course / "source" / lab / f"{lab}.ipynb"
    source_nb = nbformat.read(src_path, as_version=4)
    released = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
    kinds = _cell_kinds(source_nb)
    secrets = C.secret_lines(source_nb, released)
    submitted_dir = course / "submitted" / student / lab
    autograded_dir = course / "autograded" / student / lab
    feedback_dir = course / "feedback" / student / lab
    feedback_out = out / "feedback" / student / f"{lab}.html"
    for stale in (submitted_dir, autograded_dir, feedback_dir):
        shutil.rmtree(stale, ignore_errors=True)
    feedback_out.unlink(missing_ok=True)
    _forget(course, lab, student)

    notes: list[str] = []
    record = {"student_id": student, "lab_id": lab, "status": "graded", "cells": [], "notes": notes,
              "submission_sha256": task["submission_sha256"], "source_sha256": task["source_sha256"],
              "settings": settings.key()}
    nb_path = Path(task["notebook"])
    nb, why = _read_submission(nb_path)
    if nb is None:
        notes.append(why)
        _record_zero(course, lab, student)
        _simple_feedback(feedback_out, student, lab, why, sum(k[2] for k in kinds))
        record["cells"] = [{"grade_id": g, "kind": k, "max": p, "score": 0.0, "pending": False} for g, k, p in kinds]
        return _finish(record, start)

    nb = _repair(nb, released, notes)
    # A hidden-test line the learner also wrote (say `with torch.no_grad():`) is theirs to see.
    own = C.norm_text("\n".join(cell.source for cell in nb.cells))
    secrets = [s for s in secrets if s not in own]
    submitted_dir.mkdir(parents=True)
    for extra in nb_path.parent.iterdir():  # the learner's other files (data they made), not other notebooks
        # never a symlink: it could point at another student's work
        if extra.is_file() and not extra.is_symlink() and extra.suffix != ".ipynb" and extra.stat().st_size < 50 * 2**20:
            shutil.copy2(extra, submitted_dir / extra.name)
    nbformat.write(nb, submitted_dir / f"{lab}.ipynb")

    with tempfile.TemporaryDirectory(prefix="rg-") as scratch:  # short path: Unix sockets allow ~100 chars
        scratch = Path(scratch)
        work, ipc = scratch / "work", scratch / "ipc"
        work.mkdir()
        ipc.mkdir()
        for extra in submitted_dir.iterdir():
            if extra.suffix != ".ipynb":
                shutil.copy2(extra, work / extra.name)
        for extra in (course / "source" / lab).rglob("*"):  # the lab's own data files win
            if extra.is_file() and extra.suffix != ".ipynb":
                dst = work / extra.relative_to(course / "source" / lab)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(extra, dst)
        # Only work/ and ipc/ are bound into the box; the config and the kernel log stay outside.
        equivalents = AK.equivalents(source_nb)
        wires = sorted({p for paths in equivalents.values() for p in paths})
        cfg = SandboxConfig(work_dir=str(work), ipc_dir=str(ipc), log_path=str(scratch / "kernel.log"),
                            memory_mb=settings.memory_mb, enabled=settings.sandbox,
                            threads=max(1, (os.cpu_count() or 1) // max(1, settings.jobs)),
                            overlays=_box_overlays(course, lab), env={TRIPWIRES_ENV: json.dumps(wires)})
        cfg.save(scratch / "sandbox.json")
        os.environ[CONFIG_ENV] = str(scratch / "sandbox.json")
        events_path = scratch / "events.json"

        c = C.base_config(course)
        c.CourseDirectory.student_id = student
        c.CourseDirectory.assignment_id = lab
        c.Autograde.force = True
        c.Autograde.create_student = True
        c.Autograde.autograde_preprocessors = [SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                               StrictSaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        c.SandboxExecute.timeout = settings.cell_timeout
        c.SandboxExecute.budget = float(settings.budget)
        c.SandboxExecute.events_path = str(events_path)
        c.SandboxExecute.memory_mb = settings.memory_mb
        c.SandboxExecute.kernel_log = str(scratch / "kernel.log")
        c.SandboxExecute.tests = AK.test_sources(source_nb)
        c.SandboxExecute.learner_names = AK.learner_names(source_nb)
        c.SandboxExecute.equivalents = equivalents
        c.KernelManager.transport = "ipc"
        c.KernelManager.ip = str(ipc / "k")
        c.KernelManager.connection_file = str(ipc / "kernel.json")
        C.quiet_nbgrader()
        try:
            converter = Autograde(coursedir=CourseDirectory(config=c), config=c)
            converter.log.setLevel(logging.WARNING)
            converter.start()
        except Exception as exc:  # noqa: BLE001 - reported as status=error, never a score
            _forget(course, lab, student)
            record["status"] = "error"
            notes.append(f"the grader failed on this submission ({type(exc).__name__}: {_first_line(exc)}); "
                         f"see the worker log in {out / 'logs'}")
            return _finish(record, start)
        events = json.loads(events_path.read_text()) if events_path.exists() else []

    graded_nb = nbformat.read(autograded_dir / f"{lab}.ipynb", as_version=4)
    by_id = {c.metadata.nbgrader["grade_id"]: c for c in graded_nb.cells
             if "nbgrader" in c.metadata and "grade_id" in c.metadata.nbgrader}
    for ev in events:
        if ev["kind"] in ("timeout", "died") and not ev.get("grade_id"):
            notes.append(f"cell {ev['cell']}: {'timed out' if ev['kind'] == 'timeout' else 'the kernel died'} ({ev['detail']})")
    not_run = [ev for ev in events if ev["kind"] == "not_run"]
    if not_run:
        notes.append(f"{len(not_run)} cell(s) not run: {not_run[0]['detail']}")
    scores = _scores(course, lab, student)
    for gid, kind, points in kinds:
        s = scores.get(gid, {})
        pending = kind == "written" and s.get("auto") is None and s.get("manual") is None
        score = None if pending else float(s.get("score") or 0.0)
        record["cells"].append({"grade_id": gid, "kind": kind, "max": points, "score": score, "pending": pending})
        cell = by_id.get(gid)
        if cell is None:
            continue
        if kind == "test":
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            ours = [o for o in errors if o.get("ename") in (TIMEOUT_ENAME, DIED_ENAME, NOT_RUN_ENAME)]
            errors = ours or errors  # a timeout's KeyboardInterrupt is not the story
            if errors:
                e = errors[0]
                evalue = _first_line(e.get("evalue", ""))
                if C.leaks(evalue, secrets):
                    evalue = "(message withheld: it quotes a hidden test)"
                if e.get("ename") == "NotImplementedError":
                    text = "not answered (the function still raises NotImplementedError)"
                elif e.get("ename") == "MemoryError" or "can't allocate memory" in evalue:
                    text = f"{e.get('ename')}: ran out of memory (the cap is {settings.memory_mb} MiB)"
                elif e.get("ename") in (TIMEOUT_ENAME, DIED_ENAME, NOT_RUN_ENAME):
                    text = evalue
                else:
                    text = f"{e.get('ename')}: {evalue}" if evalue else str(e.get("ename"))
                notes.append(f"{gid}: {text}")
            elif any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.get("outputs", [])):
                notes.append(f"{gid}: passed; it wrote to stderr, which does not cost points")
        elif kind == "written" and s.get("auto") == 0 and not pending:
            notes.append(f"{gid}: written answer left blank")

    # Feedback: hidden tests removed, then checked on the rendered page.
    c = C.base_config(course)
    c.CourseDirectory.student_id = student
    c.CourseDirectory.assignment_id = lab
    c.GenerateFeedback.force = True
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
    c.HideHiddenTests.hidden = {gid: True for gid in C.hidden_sections(source_nb)}
    c.HideHiddenTests.secrets = secrets
    try:
        fb = GenerateFeedback(coursedir=CourseDirectory(config=c), config=c)
        fb.log.setLevel(logging.WARNING)
        fb.start()
        page = (feedback_dir / f"{lab}.html").read_text()
        if C.leaks(html_text(page), secrets):
            raise RuntimeError("the feedback page would quote a hidden test; it was not written")
        feedback_out.parent.mkdir(parents=True, exist_ok=True)
        feedback_out.write_text(page)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(feedback_dir, ignore_errors=True)
        record["status"] = "error"
        notes.append(f"feedback could not be made ({type(exc).__name__}: {_first_line(exc)})")
    return _finish(record, start)


def _finish(record: dict, start: float) -> dict:
    cells = record["cells"]
    auto = [c for c in cells if c["kind"] == "test"]
    written = [c for c in cells if c["kind"] == "written"]
    graded = record["status"] == "graded"
    record["auto_max"] = sum(c["max"] for c in auto)
    record["auto_score"] = sum(c["score"] or 0.0 for c in auto) if graded else None
    record["pending_max"] = sum(c["max"] for c in written if c["pending"])
    record["max_score"] = sum(c["max"] for c in cells)
    record["total"] = sum(c["score"] or 0.0 for c in cells) if graded else None
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


def worker_main() -> int:
    """A worker: one JSON task per stdin line, one result line per task on stdout."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    import nbgrader.converters  # noqa: F401 - import (about 5 s) while the parent prepares the course
    for line in sys.stdin:
        task = json.loads(line)
        try:
            result = grade_submission(task)
        except Exception as exc:  # noqa: BLE001 - the parent records status=error
            import traceback

            traceback.print_exc()
            result = _finish({"student_id": task["student"], "lab_id": task["lab"], "status": "error", "cells": [],
                              "notes": [f"the grader failed ({type(exc).__name__}: {_first_line(exc)})"]},
                             time.perf_counter())
        result_path = Path(task["out"]) / "results" / task["student"] / f"{task['lab']}.json"
        result_path.parent.mkdir(parents=True, exist_ok=True)
        C.json_dump(result_path, result)
        sys.stdout.write(RESULT_PREFIX + json.dumps({"id": task["id"]}) + "\n")
        sys.stdout.flush()
    return 0


# =========================================================================== a class

@dataclass
class Submission:
    student: str
    lab: str
    notebook: Path
    digest: str


def discover(submissions: Path) -> list[Submission]:
    """``<student>/<lab>/<lab>.ipynb`` under ``submissions`` (nbgrader's submitted layout)."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions} is not a folder of <student_id>/<lab_id>/<lab_id>.ipynb")
    found = []
    for sdir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for ldir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            nb = ldir / f"{ldir.name}.ipynb"
            found.append(Submission(sdir.name, ldir.name, nb, C.tree_digest(ldir)))
    return found


class _Worker:
    """A worker subprocess with a deadline per task."""

    def __init__(self, out: Path, n: int, env: dict):
        self.log_path = out / "logs" / f"worker-{n}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.n, self.env, self.proc = n, env, None

    def start(self) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "autograder.grading"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, env=self.env,
                                     start_new_session=True, bufsize=1)
        log.close()
        self.lines: queue.Queue = queue.Queue()
        proc = self.proc
        threading.Thread(target=self._pump, args=(proc, self.lines), daemon=True).start()

    @staticmethod
    def _pump(proc, lines) -> None:
        for line in proc.stdout:
            if line.startswith(RESULT_PREFIX):
                lines.put(json.loads(line[len(RESULT_PREFIX):]))
        lines.put(None)  # the worker exited

    def run(self, task: dict, deadline: float) -> str:
        """'ok', 'timeout' or 'crashed'."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()
        try:
            msg = self.lines.get(timeout=deadline)
        except queue.Empty:
            self.kill()
            return "timeout"
        if msg is None:
            self.kill()
            return "crashed"
        return "ok"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _kit_package() -> Path | None:
    try:
        import rlhf_helpers
    except ImportError:  # the grader can grade labs that do not use the helpers
        return None
    return Path(rlhf_helpers.__file__).resolve().parent


def _box_overlays(course: Path, lab: str) -> list[list[str]]:
    """The sandbox sees the helper package without ``lab``'s answer key (and the real world on top)."""
    package, box = _kit_package(), course / "box" / lab / "rlhf_helpers"
    if package is None or not box.is_dir():
        return []
    overlays = [[str(box), str(package)]]
    if (package / "world").is_dir():
        overlays.append([str(package / "world"), str(package / "world")])
    return overlays


def prepare_course(out: Path, solutions: Path, labs: list[str]) -> Path:
    """Generate each lab into ``out/course`` (once per source version), and the sandbox's
    copy of the helper package without that lab's answer key (every run)."""
    course = out / "course"
    state_path = course / "sources.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    package = _kit_package()
    for lab in labs:
        if package is not None:
            source_nb = nbformat.read(C.source_notebook(solutions, lab), as_version=4)
            AK.build_box_package(package, course / "box" / lab / "rlhf_helpers", AK.learner_names(source_nb), lab)
        digest = C.tree_digest(C.source_notebook(solutions, lab).parent)
        if state.get(lab) == digest and (course / "release" / lab / f"{lab}.ipynb").is_file():
            continue
        if lab in state:
            raise ValueError(f"the source of {lab} changed since {out} was graded; grade into a new --out folder "
                             f"(or delete {course} to start over)")
        C.generate_assignment(course, solutions, lab)
        state[lab] = digest
        course.mkdir(parents=True, exist_ok=True)
        C.json_dump(state_path, state)
    return course


def grade_class(submissions: Path, out: Path, solutions: Path, settings: Settings,
                progress=print) -> list[dict]:
    """Grade every submission under ``submissions`` into ``out``; returns the result records."""
    if settings.sandbox and bwrap_path() is None:
        raise SandboxUnavailable(INSTALL_HINT)
    if settings.sandbox and (why := probe()):
        raise SandboxUnavailable(why)
    out.mkdir(parents=True, exist_ok=True)
    subs = discover(submissions)
    share = out / ".jupyter"
    write_kernelspec(share)
    env = dict(os.environ)
    env["JUPYTER_PATH"] = str(share) + (os.pathsep + env["JUPYTER_PATH"] if env.get("JUPYTER_PATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Start the workers now: they import nbgrader while this process prepares the course.
    workers = [_Worker(out, n, env) for n in range(max(1, min(settings.jobs, len(subs))))]
    try:
        return _grade_class(subs, out, solutions, settings, progress, workers)
    finally:
        for w in workers:
            w.close()


def _grade_class(subs, out, solutions, settings, progress, workers) -> list[dict]:
    for w in workers:
        w.start()
    known = set(C.find_labs(solutions))
    labs = sorted({s.lab for s in subs if s.lab in known})
    course = prepare_course(out, solutions, labs)
    source_digest = json.loads((course / "sources.json").read_text()) if labs else {}

    results: dict[tuple[str, str], dict] = {}
    todo = []
    for s in subs:
        if s.lab not in known:
            results[(s.student, s.lab)] = _finish({
                "student_id": s.student, "lab_id": s.lab, "status": "error", "cells": [],
                "notes": [f"unknown lab {s.lab!r} (labs: {', '.join(sorted(known)) or 'none'}): is the folder named after the lab?"]},
                time.perf_counter())
            continue
        path = out / "results" / s.student / f"{s.lab}.json"
        if path.exists():
            old = json.loads(path.read_text())
            if (old.get("status") == "graded" and old.get("submission_sha256") == s.digest
                    and old.get("source_sha256") == source_digest[s.lab] and old.get("settings") == settings.key()):
                results[(s.student, s.lab)] = old
                continue
            path.unlink()  # never keep a result that is not for this exact submission
        todo.append(s)
    if len(results) and todo:
        progress(f"resuming: {len(results)} submission(s) already graded, {len(todo)} to go")

    tasks: queue.Queue = queue.Queue()
    for i, s in enumerate(todo):
        tasks.put({"id": i, "student": s.student, "lab": s.lab, "notebook": str(s.notebook), "course": str(course),
                   "out": str(out), "settings": asdict(settings), "submission_sha256": s.digest,
                   "source_sha256": source_digest[s.lab]})
    lock = threading.Lock()
    done = [0]
    hard_limit = settings.budget + WORKER_MARGIN_S

    def run_worker(worker: _Worker) -> None:
        while True:
            try:
                task = tasks.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            status = worker.run(task, hard_limit)
            path = out / "results" / task["student"] / f"{task['lab']}.json"
            if status == "ok" and path.exists():
                record = json.loads(path.read_text())
            else:
                why = (f"grading took longer than {hard_limit:.0f} s and was stopped" if status == "timeout"
                       else f"the grading worker crashed; see {worker.log_path}")
                record = _finish({"student_id": task["student"], "lab_id": task["lab"], "status": "error",
                                  "cells": [], "notes": [why]}, t0)
                with lock:
                    _forget(course, task["lab"], task["student"])
            with lock:
                results[(task["student"], task["lab"])] = record
                done[0] += 1
                progress(_progress_line(done[0], len(todo), record, time.perf_counter() - t0))

    threads = [threading.Thread(target=run_worker, args=(w,)) for w in workers[:max(1, len(todo))]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ordered = [results[(s.student, s.lab)] for s in subs]
    notebooks: dict[str, dict[str, Path]] = {}
    for s in subs:
        if s.lab in known and s.notebook.is_file() and not s.notebook.is_symlink():
            notebooks.setdefault(s.lab, {})[s.student] = s.notebook
    flagged = similarity.report(out, course, labs, notebooks, _kit_package())
    for r in ordered:
        r["flags"] = flagged.get((r["student_id"], r["lab_id"]), [])
    write_csv(out / "grades.csv", ordered, solutions_order(course, labs))
    return ordered


def _progress_line(i: int, n: int, r: dict, seconds: float) -> str:
    if r["status"] != "graded":
        return f"[{i}/{n}] {r['student_id']}/{r['lab_id']}: ERROR: {'; '.join(r['notes'])}"
    pending = f", {r['pending_max']:g} pending" if r["pending_max"] else ""
    return f"[{i}/{n}] {r['student_id']}/{r['lab_id']}: {r['auto_score']:g}/{r['auto_max']:g} auto{pending} ({seconds:.1f} s)"


def solutions_order(course: Path, labs: list[str]) -> list[tuple[str, str]]:
    """(lab, grade_id) of every graded cell, lab by lab, in notebook order."""
    out = []
    for lab in labs:
        nb = nbformat.read(course / "source" / lab / f"{lab}.ipynb", as_version=4)
        out += [(lab, gid) for gid, _, _ in _cell_kinds(nb)]
    return out


def write_csv(path: Path, records: list[dict], cells: list[tuple[str, str]]) -> None:
    """``grades.csv``: one row per student and lab, one column per graded cell.
    A cell column is named by its grade_id (``lab:grade_id`` when two labs share one)."""
    ids = [gid for _, gid in cells]
    names = {(lab, gid): (gid if ids.count(gid) == 1 else f"{lab}:{gid}") for lab, gid in cells}
    header = CSV_FIXED + [names[c] for c in cells] + CSV_TAIL
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in records:
            row = {"student_id": r["student_id"], "lab_id": r["lab_id"], "status": r["status"],
                   "reason": "; ".join(r.get("notes", [])), "flags": "; ".join(r.get("flags", []))}
            graded = r["status"] == "graded"
            for c in r.get("cells", []):
                key = names.get((r["lab_id"], c["grade_id"]))
                if key:
                    row[key] = "pending" if c["pending"] else (f"{c['score']:g}" if graded and c["score"] is not None else "")
            for k in ("auto_score", "auto_max", "pending_max", "total", "max_score"):
                v = r.get(k)
                row[k] = "" if v is None else f"{v:g}"
            w.writerow([row.get(h, "") for h in header])
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(worker_main())
