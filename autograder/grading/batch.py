"""Grade a whole class, in parallel: what ``rlhf-course grade`` and ``rlhf-course check`` run.

``grade_class``:

1. generates every lab that has submissions into an nbgrader course folder
   (``<out>/course``) from its source, which also records its cells in the
   gradebook (SQLite with a 60 s busy timeout, shared by the workers), and
   makes the sandbox's copy of the helper package without that lab's answer
   key (:mod:`autograder.grading.answer_key`);
2. starts ``--jobs N`` long-lived worker processes (:mod:`autograder.grading.worker`)
   that take submissions from a queue; a worker grades one submission in the
   sandbox, judges its tests outside it, writes the feedback and writes
   ``<out>/results/<student>/<lab>.json`` last, atomically;
3. kills a worker that overruns the submission's time budget (the sandboxed
   kernel dies with it) and grades the rest; a submission that could not be
   graded gets ``status=error`` and no score, never an old one;
4. compares the submissions for copying (:mod:`autograder.grading.similarity`) and
   writes ``grades.csv`` from the results of this class.

One run writes to an ``--out`` folder at a time (a lock on ``<out>/.grading.lock``,
held by the workers too). A worker notices when its grader is gone and stops, so a
killed run leaves nothing grading behind it.

A re-run with the same ``--out`` skips submissions whose result is already
there for the same notebook, source and settings, and re-grades the rest from
scratch (their old gradebook entries are removed first), so a run that was
killed resumes without stale scores.

A class too big for one machine is graded in shards (``--shard K/N``: the
submissions whose stable hash of student and lab is K modulo N, each shard on
its own machine and ``--out``), then ``merge_shards`` (``rlhf-course merge``)
gathers the shards' results and feedback into one ``--out`` and compares the
whole class for copying: the merged ``grades.csv`` and ``similarity.csv`` are
those of grading the class in one run.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from autograder.grading import answer_key as AK
from autograder.grading.gradebook import generate_assignment
from autograder.labs import find_labs, json_dump, source_notebook, tree_digest
from autograder.grading import provenance, similarity
from autograder.grading.sandbox import INSTALL_HINT, SandboxUnavailable, bwrap_path, probe, write_kernelspec
from autograder.grading.records import RESULT_PREFIX, Record, Settings, Task
from autograder.grading.gradebook import cell_kinds, forget, register_students
from autograder.grading.worker import kit_package

WORKER_MARGIN_S = 180
"""Seconds a worker may take beyond a notebook's budget (kernel start, nbgrader, feedback)
before the parent kills it and records ``status=error`` for that submission."""
LOCK_FILE = ".grading.lock"
LOCK_WAIT_S = 60.0
"""Seconds a run waits for an earlier one (or its workers) to stop writing to the same ``--out``."""
CSV_FIXED = ["student_id", "lab_id"]
CSV_TAIL = ["auto_score", "auto_max", "pending_max", "total", "max_score", "status", "reason", "flags"]


# =========================================================================== a class

@dataclass
class Submission:
    student: str
    lab: str
    notebook: Path
    digest: str


def shard_of(student: str, lab: str, n: int) -> int:
    """The shard (0 to n - 1) that grades this student's lab: a stable hash, the same on every machine."""
    return int.from_bytes(hashlib.sha256(f"{student}/{lab}".encode()).digest()[:8], "big") % n


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (K counts from 0, like a Kubernetes
    Indexed Job's ``JOB_COMPLETION_INDEX`` or a Slurm array task id ``--array=0-(N-1)``)."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard should be K/N, e.g. 0/4 (shards 0 to 3 of 4), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard {text}: K must be 0 to N - 1 and N at least 1")
    return k, n


def discover(submissions: Path) -> list[Submission]:
    """``<student>/<lab>/<lab>.ipynb`` under ``submissions`` (nbgrader's submitted layout)."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions} is not a folder of <student_id>/<lab_id>/<lab_id>.ipynb")
    found = []
    for sdir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for ldir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            nb = ldir / f"{ldir.name}.ipynb"
            found.append(Submission(sdir.name, ldir.name, nb, tree_digest(ldir)))
    return found


class _Worker:
    """A worker subprocess with a deadline per task."""

    def __init__(self, out: Path, n: int, env: dict, lock_fd: int | None = None):
        self.log_path = out / "logs" / f"worker-{n}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.n, self.env, self.proc = n, env, None
        self.pass_fds = () if lock_fd is None else (lock_fd,)  # the worker holds the --out lock too

    def start(self) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "autograder.grading.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, env=self.env,
                                     start_new_session=True, bufsize=1, pass_fds=self.pass_fds)
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

    def run(self, task: Task, deadline: float) -> str:
        """'ok', 'timeout' or 'crashed'."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(task.to_json() + "\n")
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


def prepare_course(out: Path, solutions: Path, labs: list[str]) -> Path:
    """Generate each lab into ``out/course`` (once per source version), and the sandbox's
    copy of the helper package without that lab's answer key (every run)."""
    course = out / "course"
    state_path = course / "sources.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    package = kit_package()
    for lab in labs:
        if package is not None:
            AK.lab_box(package, solutions, lab, course / "box" / lab / "rlhf_helpers")
        digest = tree_digest(source_notebook(solutions, lab).parent)
        if state.get(lab) == digest and (course / "release" / lab / f"{lab}.ipynb").is_file():
            continue
        if lab in state:
            raise ValueError(f"the source of {lab} changed since {out} was graded; grade into a new --out folder "
                             f"(or delete {course} to start over)")
        generate_assignment(course, solutions, lab)
        state[lab] = digest
        course.mkdir(parents=True, exist_ok=True)
        json_dump(state_path, state)
    return course


def grade_class(submissions: Path, out: Path, solutions: Path, settings: Settings, progress=print,
                shard: tuple[int, int] | None = None, due: datetime | None = None, restart: bool = False) -> list[Record]:
    """Grade every submission under ``submissions`` (or one ``shard=(K, N)`` of them) into ``out``;
    returns the result records. ``due``: flag submissions whose nbgrader ``timestamp.txt`` is later.
    ``restart``: forget what an earlier run left in ``out`` and grade everything again."""
    if settings.sandbox and bwrap_path() is None:
        raise SandboxUnavailable(INSTALL_HINT)
    if settings.sandbox and (why := probe()):
        raise SandboxUnavailable(why)
    out.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_out(out, progress)
    try:
        if restart:  # under the lock: never under another run's feet
            for name in ("course", "results", "feedback", "grades.csv", "logs", SHARD_FILE):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        return _grade_locked(submissions, out, solutions, settings, progress, shard, due, lock_fd)
    finally:
        os.close(lock_fd)  # released when the workers, which share it, have stopped too


def lock_out(out: Path, progress=print) -> int:
    """Take ``out``'s lock (an open file descriptor), waiting up to ``LOCK_WAIT_S`` for an
    earlier run, or a worker it left behind, to let go of it."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise ValueError(f"another grading run is still writing to {out}: let it finish or stop it, "
                                 "or grade into another --out folder") from None
            if not told:
                progress(f"waiting for another grading run to stop writing to {out}")
                told = True
            time.sleep(0.2)


def _grade_locked(submissions, out, solutions, settings, progress, shard, due, lock_fd) -> list[Record]:
    subs = discover(submissions)
    if shard is not None:
        _claim_shard(out, submissions, shard)
        subs = [s for s in subs if shard_of(s.student, s.lab, shard[1]) == shard[0]]
    share = out / ".jupyter"
    write_kernelspec(share)
    env = dict(os.environ)
    env["JUPYTER_PATH"] = str(share) + (os.pathsep + env["JUPYTER_PATH"] if env.get("JUPYTER_PATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The judge computes references in the worker: its share of the cores, like each kernel's.
    threads = str(max(1, (os.cpu_count() or 1) // max(1, settings.jobs)))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, RLHF_COURSE_WORKERS=threads)
    # Start the workers now: they import nbgrader while this process prepares the course.
    workers = [_Worker(out, n, env, lock_fd) for n in range(max(1, min(settings.jobs, len(subs))))]
    try:
        return _grade_class(subs, out, solutions, settings, progress, workers, due)
    finally:
        for w in workers:
            w.close()


def _grade_class(subs, out, solutions, settings, progress, workers, due) -> list[Record]:
    for w in workers:
        w.start()
    known = set(find_labs(solutions))
    labs = sorted({s.lab for s in subs if s.lab in known})
    course = prepare_course(out, solutions, labs)
    source_digest = json.loads((course / "sources.json").read_text()) if labs else {}
    results, todo = _resume(subs, out, known, source_digest, settings)
    if results and todo:
        progress(f"resuming: {len(results)} submission(s) already graded, {len(todo)} to go")
    register_students(course, [s.student for s in todo])
    tasks = [Task(i, s.student, s.lab, str(s.notebook), str(course), str(out), settings, s.digest, source_digest[s.lab])
             for i, s in enumerate(todo)]
    results.update(_run_tasks(tasks, workers, course, settings.budget + WORKER_MARGIN_S, progress))
    return _report(out, course, subs, known, results, due)


def submitted_at(s: Submission) -> datetime | None:
    """When the learner submitted, from nbgrader's ``timestamp.txt`` beside the notebook (UTC if no zone)."""
    from dateutil import parser

    stamp = s.notebook.parent / "timestamp.txt"
    if not stamp.is_file():
        return None
    try:
        when = parser.parse(stamp.read_text().strip())
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def late_flag(s: Submission, due: datetime | None) -> list[str]:
    when = submitted_at(s) if due is not None else None
    if when is None or when <= due:
        return []
    return [f"submitted late ({when.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{str(when - due).split('.')[0]} after the due time)"]


def _report(out: Path, course: Path, subs: list[Submission], known: set[str],
            results: dict[tuple[str, str], Record], due: datetime | None = None) -> list[Record]:
    """Compare the class for copying, then write ``grades.csv``: the records in submission order."""
    labs = sorted({s.lab for s in subs if s.lab in known})
    ordered = [results[(s.student, s.lab)] for s in subs]
    notebooks: dict[str, dict[str, Path]] = {}
    for s in subs:
        if s.lab in known and s.notebook.is_file() and not s.notebook.is_symlink():
            notebooks.setdefault(s.lab, {})[s.student] = s.notebook
    flagged = similarity.report(out, course, labs, notebooks, kit_package())
    for s, r in zip(subs, ordered):
        r.flags = late_flag(s, due) + provenance.flags_of(r.provenance) + flagged.get((r.student_id, r.lab_id), [])
    write_csv(out / "grades.csv", ordered, solutions_order(course, labs))
    provenance.write_report(out, ordered)
    return ordered


# =========================================================================== shards

SHARD_FILE = "shard.json"


def _claim_shard(out: Path, submissions: Path, shard: tuple[int, int]) -> None:
    """Mark ``out`` as shard K of N of this class; refuse an ``out`` that holds another shard."""
    path = out / SHARD_FILE
    claim = {"shard": shard[0], "of": shard[1], "submissions": str(submissions.resolve())}
    if path.exists():
        old = json.loads(path.read_text())
        if (old.get("shard"), old.get("of")) != shard:
            raise ValueError(f"{out} holds shard {old.get('shard')}/{old.get('of')} of a class; "
                             f"grade shard {shard[0]}/{shard[1]} into its own --out folder")
    elif (out / "results").exists():
        raise ValueError(f"{out} holds a whole class's results; grade a shard into its own --out folder")
    json_dump(path, claim)


def merge_shards(submissions: Path, shard_outs: list[Path], out: Path, solutions: Path,
                 due: datetime | None = None) -> list[Record]:
    """Gather the results of every shard of a class into ``out`` and report on the whole class.

    ``shard_outs`` are the ``--out`` folders of ``grade --shard K/N`` for K = 0 to N - 1 (any order).
    A submission with no result in its shard (not graded yet, or changed since) gets
    ``status=error`` with the reason, never a score from elsewhere.
    """
    claims = {}
    for folder in shard_outs:
        path = folder / SHARD_FILE
        if not path.is_file():
            raise ValueError(f"{folder} is not the --out folder of `rlhf-course grade --shard K/N`")
        claim = json.loads(path.read_text())
        if claim["shard"] in claims:
            raise ValueError(f"shard {claim['shard']} is given twice ({claims[claim['shard']][0]} and {folder})")
        claims[claim["shard"]] = (folder, claim)
    sizes = {c["of"] for _, c in claims.values()}
    if len(sizes) != 1:
        raise ValueError(f"the folders are shards of different splits (N = {sorted(sizes)})")
    n = sizes.pop()
    missing = sorted(set(range(n)) - set(claims))
    if missing:
        raise ValueError(f"shards {missing} of {n} are missing: merge needs every shard's --out folder")
    courses = [claims[k][0] / "course" for k in range(n)]
    sources = [json.loads((c / "sources.json").read_text()) if (c / "sources.json").exists() else {} for c in courses]
    for k, src in enumerate(sources):
        clash = [lab for lab in src if any(lab in other and other[lab] != src[lab] for other in sources)]
        if clash:
            raise ValueError(f"shard {k} graded {clash} from another version of the source than the other shards")
    merged = {lab: digest for src in sources for lab, digest in src.items()}

    out.mkdir(parents=True, exist_ok=True)
    course = _merged_course(out, courses, merged)
    subs = discover(submissions)
    known = set(find_labs(solutions))
    ungraded = sorted({s.lab for s in subs if s.lab in known} - set(merged))
    if ungraded:
        raise ValueError(f"no shard graded {ungraded}: were the shards graded from this submissions folder?")
    results: dict[tuple[str, str], Record] = {}
    for s in subs:
        folder = claims[shard_of(s.student, s.lab, n)][0]
        results[(s.student, s.lab)] = _shard_record(s, folder, merged, known)
        if results[(s.student, s.lab)].graded:
            for src in (folder / "results" / s.student / f"{s.lab}.json", folder / "feedback" / s.student / f"{s.lab}.html"):
                dst = out / src.relative_to(folder)
                if src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
    return _report(out, course, subs, known, results, due)


def _merged_course(out: Path, courses: list[Path], sources: dict[str, str]) -> Path:
    """``out/course`` with the source and release of every lab graded in any shard (for the reports)."""
    course = out / "course"
    for lab in sources:
        for kind in ("source", "release"):
            src = next((c / kind / lab for c in courses if (c / kind / lab).is_dir()), None)
            if src is not None:
                shutil.copytree(src, course / kind / lab, dirs_exist_ok=True)
    course.mkdir(parents=True, exist_ok=True)
    json_dump(course / "sources.json", sources)
    return course


def _shard_record(s: Submission, folder: Path, sources: dict[str, str], known: set[str]) -> Record:
    """The record shard ``folder`` holds for submission ``s``, or a failed record saying why not."""
    if s.lab not in known:
        return _unknown_lab(s, known)
    path = folder / "results" / s.student / f"{s.lab}.json"
    if not path.exists():
        return Record.failed(s.student, s.lab, f"no result in its shard ({folder}): grade that shard (again)")
    record = Record.load(path)
    if not record.is_for(s.digest, sources[s.lab]):  # merge_shards checked that a shard graded s.lab
        return Record.failed(s.student, s.lab, f"the submission changed since its shard ({folder}) graded it: "
                                               "grade that shard again")
    return record


def _resume(subs, out: Path, known: set[str], source_digest: dict, settings: Settings):
    """Records kept from an earlier run of this exact submission, source and settings, and what
    is left to grade (every other earlier result is deleted: never a stale score)."""
    results: dict[tuple[str, str], Record] = {}
    todo = []
    for s in subs:
        if s.lab not in known:
            results[(s.student, s.lab)] = _unknown_lab(s, known)
            continue
        path = out / "results" / s.student / f"{s.lab}.json"
        if path.exists():
            old = Record.load(path)
            if old.graded and old.is_for(s.digest, source_digest[s.lab], settings.key()):
                results[(s.student, s.lab)] = old
                continue
            path.unlink()  # never keep a result that is not for this exact submission
        todo.append(s)
    return results, todo


def _unknown_lab(s: Submission, known: set[str]) -> Record:
    return Record.failed(s.student, s.lab, f"unknown lab {s.lab!r} (labs: {', '.join(sorted(known)) or 'none'}): "
                                           "is the folder named after the lab?")


def _run_tasks(tasks: list[Task], workers: list[_Worker], course: Path, hard_limit: float,
               progress) -> dict[tuple[str, str], Record]:
    """Grade ``tasks`` on the workers; a worker past ``hard_limit`` seconds on one task is killed."""
    pending: queue.Queue = queue.Queue()
    for task in tasks:
        pending.put(task)
    results: dict[tuple[str, str], Record] = {}
    lock = threading.Lock()

    def run_worker(worker: _Worker) -> None:
        while True:
            try:
                task = pending.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            status = worker.run(task, hard_limit)
            if status == "ok" and task.result_path.exists():
                record = Record.load(task.result_path)
            else:
                why = (f"grading took longer than {hard_limit:.0f} s and was stopped" if status == "timeout"
                       else f"the grading worker crashed; see {worker.log_path}")
                record = Record.failed(task.student, task.lab, why, t0)
                with lock:
                    forget(course, task.lab, task.student)
            with lock:
                results[(task.student, task.lab)] = record
                progress(_progress_line(len(results), len(tasks), record, time.perf_counter() - t0))

    threads = [threading.Thread(target=run_worker, args=(w,)) for w in workers[:max(1, len(tasks))]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _progress_line(i: int, n: int, r: Record, seconds: float) -> str:
    if not r.graded:
        return f"[{i}/{n}] {r.student_id}/{r.lab_id}: ERROR: {'; '.join(r.notes)}"
    pending = f", {r.pending_max:g} pending" if r.pending_max else ""
    return f"[{i}/{n}] {r.student_id}/{r.lab_id}: {r.auto_score:g}/{r.auto_max:g} auto{pending} ({seconds:.1f} s)"


def solutions_order(course: Path, labs: list[str]) -> list[tuple[str, str]]:
    """(lab, grade_id) of every graded cell, lab by lab, in notebook order."""
    out = []
    for lab in labs:
        nb = nbformat.read(course / "source" / lab / f"{lab}.ipynb", as_version=4)
        out += [(lab, gid) for gid, _, _ in cell_kinds(nb)]
    return out


def write_csv(path: Path, records: list[Record], cells: list[tuple[str, str]]) -> None:
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
            row = {"student_id": r.student_id, "lab_id": r.lab_id, "status": r.status,
                   "reason": "; ".join(r.notes), "flags": "; ".join(r.flags)}
            for c in r.cells:
                key = names.get((r.lab_id, c.grade_id))
                if key:
                    row[key] = "pending" if c.pending else (f"{c.score:g}" if r.graded and c.score is not None else "")
            for k in ("auto_score", "auto_max", "pending_max", "total", "max_score"):
                v = getattr(r, k)
                row[k] = "" if v is None else f"{v:g}"
            w.writerow([row.get(h, "") for h in header])
    os.replace(tmp, path)
