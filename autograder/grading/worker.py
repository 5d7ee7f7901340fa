"""Grade one submission, in a worker process: ``python -m autograder.grading.worker``.

The parent (:mod:`autograder.grading.batch`) sends one :class:`Task` per line on
stdin. The worker grades it with :func:`grade_submission`, writes the
:class:`Record` to ``<out>/results/<student>/<lab>.json`` last and atomically
(the resume state), and answers with one line on stdout. A worker imports
nbgrader once (about 5 s) and then grades task after task.

:func:`grade_submission`, step by step:

1. :func:`read_submission` and :func:`repair` make the notebook gradeable
   (invalid JSON scores 0 with the reason; deleted, renamed or edited test
   and locked cells are put back);
2. :func:`_autograde` runs nbgrader's ``Autograde`` with
   :class:`~autograder.grading.preprocessors.SandboxExecute`: the kernel runs in the
   bubblewrap box with per-cell limits and observes; each test is judged here
   (:mod:`autograder.grading.judge`);
3. :func:`_read_scores` reads the gradebook and says why points were lost;
4. :func:`_feedback` writes the learner's feedback without hidden tests.
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from rlhf_helpers.observations import TRIPWIRES_ENV

from autograder.cells import ANSI, grade_id, hidden_sections, leaks, norm_text, secret_lines, skipped_while_grading
from autograder.grading import answer_key as AK
from autograder.grading import gradebook as GB
from autograder.grading import judge as J
from autograder.grading.gradebook import base_config, quiet_nbgrader
from autograder.grading.records import RESULT_PREFIX, CellScore, Record, Settings, Task, first_line
from autograder.grading.sandbox import CONFIG_ENV, SandboxConfig
from autograder.labs import repo_root

HINT = "\nHint: "
MAX_LEARNER_FILE = 50 * 2**20
"""Largest file beside a learner's notebook that is copied for grading (bytes)."""


# =========================================================================== reading a submission


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
    return {grade_id(c): i for i, c in enumerate(nb.cells) if "nbgrader" in c.metadata}


def repair(nb, released, notes: list[str]):
    """Make the submission gradeable against the released copy: unknown graded ids lose their
    grading metadata, missing graded or locked cells come back, and edits to locked cells are
    noted (nbgrader's OverwriteCells restores them)."""
    rel_cells = [c for c in released.cells if "nbgrader" in c.metadata]
    rel_ids = {grade_id(c): c for c in rel_cells}
    seen: set[str] = set()
    for cell in nb.cells:
        if not cell.metadata.get("nbgrader"):
            continue
        gid = grade_id(cell)
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
        gid = grade_id(ref)
        if gid in index_of:
            continue
        blank = " (blank)" if nbutils.is_solution(ref) else ""
        notes.append(f"{_kind(ref)} {gid!r} was missing (deleted or renamed): restored from the lab{blank}")
        anchor = next((index_of[grade_id(r)] for r in reversed(rel_cells[:pos])
                       if grade_id(r) in index_of), -1)
        nb.cells.insert(anchor + 1, nbformat.from_dict(json.loads(json.dumps(ref))))
        index_of = _graded_ids(nb)
    return nb


# =========================================================================== the gradebook


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
        return cls(lab, source, released, GB.cell_kinds(source), secret_lines(source, released))


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
    GB.forget(course, task.lab, task.student)
    record = Record(task.student, task.lab, submission_sha256=task.submission_sha256,
                    source_sha256=task.source_sha256, settings=task.settings.key())
    nb, why = read_submission(Path(task.notebook))
    if nb is None:
        record.notes.append(why)
        GB.record_zero(course, task.lab, task.student)
        _simple_feedback(feedback_out, task.student, task.lab, why, sum(k[2] for k in lab.kinds))
        record.cells = [CellScore(g, k, p, 0.0) for g, k, p in lab.kinds]
        return record.finish(start)
    nb = repair(nb, lab.released, record.notes)
    own = norm_text("\n".join(cell.source for cell in nb.cells))
    secrets = [s for s in lab.secrets if s not in own]  # a hidden-test line the learner also wrote is theirs to see
    dirs["submitted"].mkdir(parents=True)
    for extra in learner_files(Path(task.notebook).parent):
        shutil.copy2(extra, dirs["submitted"] / extra.name)
    nbformat.write(nb, dirs["submitted"] / f"{task.lab}.ipynb")
    try:
        run = _autograde(task, lab, dirs["submitted"])
    except Exception as exc:  # noqa: BLE001 - reported as status=error, never a score
        GB.forget(course, task.lab, task.student)
        record.status = "error"
        record.notes.append(f"the grader failed on this submission ({type(exc).__name__}: {first_line(exc)}); "
                            f"see the worker log in {out / 'logs'}")
        return record.finish(start)
    record.provenance = run["provenance"]
    _read_scores(record, task, lab, run, secrets)
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


def _autograde(task: Task, lab: _Lab, submitted: Path) -> dict:
    """Run nbgrader's Autograde on the stored submission with the kit's sandboxed, judged
    execution; returns what the run wrote as data: ``events`` (timeouts, deaths, cells not run),
    ``verdicts`` (each test's, as the judge reached it: the gradebook's scores were made from
    them) and ``provenance`` (of the graded functions, :mod:`autograder.grading.provenance`)."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput
    from nbconvert.preprocessors import ClearMetadataPreprocessor

    from autograder.grading.preprocessors import SandboxExecute, StrictSaveAutoGrades

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
                      hide=[task.out, str(Path(task.notebook).parents[2]), str(repo_root() / "solutions")],
                      ).save(scratch / "sandbox.json")
        os.environ[CONFIG_ENV] = str(scratch / "sandbox.json")
        c = base_config(course)
        c.CourseDirectory.student_id, c.CourseDirectory.assignment_id = task.student, task.lab
        c.Autograde.force = c.Autograde.create_student = True
        c.Autograde.autograde_preprocessors = [SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                               StrictSaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        c.SandboxExecute.update(timeout=settings.cell_timeout, budget=float(settings.budget),
                                events_path=str(scratch / "events.json"), verdicts_path=str(scratch / "verdicts.json"),
                                memory_mb=settings.memory_mb,
                                kernel_log=str(scratch / "kernel.log"), tests=AK.test_sources(lab.source),
                                learner_names=AK.learner_names(lab.source), equivalents=equivalents,
                                provenance_path=str(scratch / "provenance.json"),
                                handed_out=[".".join(pair) for pair in manifest.get("handed_out", [])],
                                given=[c.source for c in lab.released.cells if c.cell_type == "code"],
                                skip=[c.source for c in lab.source.cells if skipped_while_grading(c)])
        c.StrictSaveAutoGrades.verdicts_path = str(scratch / "verdicts.json")
        c.KernelManager.transport = "ipc"
        c.KernelManager.ip, c.KernelManager.connection_file = str(ipc / "k"), str(ipc / "kernel.json")
        quiet_nbgrader()
        converter = Autograde(coursedir=CourseDirectory(config=c), config=c)
        converter.log.setLevel(logging.WARNING)
        converter.start()
        return {name: _read_json(scratch / f"{name}.json", empty) for name, empty in
                (("events", []), ("verdicts", {}), ("provenance", {}))}


def _read_json(path: Path, empty):
    return json.loads(path.read_text()) if path.exists() else empty


_CANONICAL: dict[str, str | None] = {}
"""Dotted path -> ``module:qualname`` where it is defined (autograder.grading.equivalents.canonical), per worker."""


def wired_equivalents(equivalents: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each graded name's equivalents, also under the names the kernel reports them by: where each is
    defined (the kernel wires it as that module loads, so a reference taken early is wired too)."""
    from autograder.grading.equivalents import canonical

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


def _why(verdict: dict | None, settings: Settings, secrets: list[str]) -> str | None:
    """Why a judged test lost its points, from its verdict (None when it passed)."""
    if verdict is None:
        return "the grader reached no verdict for this test"
    if verdict["passed"]:
        return None
    full = ANSI.sub("", str(verdict.get("message", "")))
    ename, evalue = verdict.get("ename"), first_line(full)
    if HINT in full and not evalue.startswith("Hint: "):
        evalue += " | Hint: " + first_line(full.split(HINT, 1)[1])
    if leaks(evalue, secrets):
        evalue = "(message withheld: it quotes a hidden test)"
    if ename == "NotImplementedError":
        return "not answered (the function still raises NotImplementedError)"
    if ename == "MemoryError" or "can't allocate memory" in evalue:
        return f"{ename}: ran out of memory (the cap is {settings.memory_mb} MiB)"
    if ename in (J.TIMEOUT_ENAME, J.DIED_ENAME, J.NOT_RUN_ENAME):
        return evalue
    return f"{ename}: {evalue}" if evalue else str(ename)


def _read_scores(record: Record, task: Task, lab: _Lab, run: dict, secrets: list[str]) -> None:
    """The gradebook's scores into ``record``, with a note for every point lost (the judge's verdicts
    say why) and every event of the run."""
    events, verdicts = run["events"], run["verdicts"]
    course = Path(task.course)
    graded_nb = nbformat.read(course / "autograded" / task.student / task.lab / f"{task.lab}.ipynb", as_version=4)
    by_id = {grade_id(c): c for c in graded_nb.cells if "grade_id" in c.metadata.get("nbgrader", {})}
    for ev in events:
        if ev["kind"] in ("timeout", "died") and not ev.get("grade_id"):
            what = "timed out" if ev["kind"] == "timeout" else "the kernel died"
            record.notes.append(f"cell {ev['cell']}: {what} ({ev['detail']})")
    not_run = [ev for ev in events if ev["kind"] == "not_run"]
    if not_run:
        record.notes.append(f"{len(not_run)} cell(s) not run: {not_run[0]['detail']}")
    scores = GB.scores(course, task.lab, task.student)
    for gid, kind, points in lab.kinds:
        s = scores.get(gid, {})
        pending = kind == "written" and s.get("auto") is None and s.get("manual") is None
        record.cells.append(CellScore(gid, kind, points, None if pending else float(s.get("score") or 0.0), pending))
        cell = by_id.get(gid)
        if cell is None:
            continue
        if kind == "test":
            why = _why(verdicts.get(gid), task.settings, secrets)
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

    from autograder.grading.preprocessors import HideHiddenTests

    course = Path(task.course)
    feedback_dir = course / "feedback" / task.student / task.lab
    c = base_config(course)
    c.CourseDirectory.student_id, c.CourseDirectory.assignment_id = task.student, task.lab
    c.GenerateFeedback.force = True
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
    c.HideHiddenTests.hidden = {gid: True for gid in hidden_sections(lab.source)}
    c.HideHiddenTests.secrets = secrets
    try:
        fb = GenerateFeedback(coursedir=CourseDirectory(config=c), config=c)
        fb.log.setLevel(logging.WARNING)
        fb.start()
        page = (feedback_dir / f"{task.lab}.html").read_text()
        if leaks(html_text(page), secrets):
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
