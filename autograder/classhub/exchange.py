"""A class through nbgrader's exchange: release labs, collect submissions, return feedback.

What ``rlhf-course exchange`` runs on a class hub (``hub/``, docs/HUB.md). The
engine is nbgrader's own exchange (a shared folder; learners fetch and submit
from their servers with the Assignments panel); this module only connects it to
the kit's grader::

    rlhf-course exchange release lab1_sampling lab2_rewards   # source -> exchange
    rlhf-course exchange collect lab1_sampling                 # exchange -> course/submitted
    rlhf-course grade course/submitted --out graded            # the sandboxed grader
    rlhf-course exchange feedback graded lab1_sampling         # graded/feedback -> each learner

Each learner's latest submission counts (nbgrader collects with ``update``);
submissions keep nbgrader's ``timestamp.txt``, which ``grade --due`` reads.
A submission whose folder does not belong to the learner it names is refused
(nbgrader itself only warns, and collects it): on a hub where every learner is a
system user, nobody can submit in a classmate's name. Feedback is released keyed
by each submission's secret, so a learner can fetch only the feedback of their
own submission. ``rlhf-course exchange roster ROSTER.csv`` puts the class list in
the gradebook (the hub's allow-list is the same file).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nbgrader.exchange.default import ExchangeCollect, ExchangeSubmit
from nbgrader.utils import ignore_patterns

from autograder.grading.gradebook import base_config, db_url, generate_assignment
from autograder.labs import find_labs, tree_digest

COURSE_ID = "rlhf-course"
INSTRUCTOR_TOOLS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                    "@jupyter/nbgrader:course-list")
"""nbgrader's JupyterLab plugins for instructors (``learner_defaults`` turns them off)."""
INSTRUCTOR_EXTENSIONS = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")

USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{1,31}$"
"""A hub user name that is also a valid system user name and nbgrader student id."""

ROSTER_COLUMNS = ("id", "first_name", "last_name", "email")


@dataclass(frozen=True)
class Student:
    """One row of the roster (nbgrader's student CSV)."""

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


def read_roster(path: Path) -> list[Student]:
    """The students of ``path``, a CSV with an ``id`` column (nbgrader's ``nbgrader db student
    import`` format: ``id,first_name,last_name,email``). Raises ``ValueError`` naming every bad row."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        if "id" not in fields:
            raise ValueError(f"{path}: the roster needs a header line with an 'id' column "
                             f"(nbgrader's student CSV: {','.join(ROSTER_COLUMNS)})")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in reader]
    students, seen, problems = [], set(), []
    for line, row in enumerate(rows, start=2):
        sid = row.get("id", "")
        if not re.match(USERNAME_PATTERN, sid):
            problems.append(f"line {line}: {sid!r} is not a usable student id (lower-case letters, digits, '-' "
                            f"and '_', starting with a letter, 2 to 32 characters)")
        elif sid in seen:
            problems.append(f"line {line}: {sid!r} is listed twice")
        else:
            seen.add(sid)
            students.append(Student(sid, row.get("first_name", ""), row.get("last_name", ""), row.get("email", "")))
    if problems:
        raise ValueError(f"{path}:\n  " + "\n  ".join(problems))
    if not students:
        raise ValueError(f"{path}: the roster lists no students")
    return students


def learner_defaults() -> None:
    """Turn nbgrader's instructor tools off in this Python environment (``make setup`` and the hub's
    image run it: ``rlhf-course exchange learner-defaults``), so a learner's JupyterLab shows only the
    Assignments panel; an instructor's hub server turns them back on in its own config folder
    (:func:`write_role_config`)."""
    jupyter = [sys.executable, "-m", "jupyter"]
    for args in (["labextension", "disable", "--level=sys_prefix", *INSTRUCTOR_TOOLS],
                 ["labextension", "lock", "--level=sys_prefix", *INSTRUCTOR_TOOLS],
                 ["server", "extension", "disable", "--sys-prefix", *INSTRUCTOR_EXTENSIONS]):
        done = subprocess.run(jupyter + args, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`jupyter {' '.join(args)}` failed: {(done.stderr or done.stdout).strip()}")


def write_role_config(folder: Path, role: str, exchange_root: Path, course_id: str = COURSE_ID) -> Path:
    """The Jupyter config folder (``JUPYTER_CONFIG_DIR``) for every server of ``role`` on a hub.

    'learner': nbgrader's exchange, the student id from the hub's user name, the instructor tools
    off (and locked). 'instructor': the same exchange, the course folder ``~/course``, the tools on.
    Both: ``data/`` (the servers' ``JUPYTER_PATH``) holds the Python kernel spec, which loads
    :mod:`autograder.classhub.memory_notice` so that a kernel stopped at the memory limit says why."""
    if role not in ("learner", "instructor"):
        raise ValueError(f"role should be 'learner' or 'instructor', got {role!r}")
    on = role == "instructor"
    nbgrader = [
        "import os",
        "c = get_config()",
        f"c.Exchange.root = {str(exchange_root)!r}",
        f"c.CourseDirectory.course_id = {course_id!r}",
        # The exchange's student id is the hub's user name (a 'shared' hub runs every server as one system user).
        "c.CourseDirectory.root = os.path.join(os.environ['HOME'], 'course')" if on else
        "c.CourseDirectory.student_id = os.environ['JUPYTERHUB_USER']",
        # A submission readable by its learner and the exchange's group (the instructors) only.
        "c.ExchangeFactory.submit = 'autograder.classhub.exchange.PrivateSubmit'",
    ]
    # jupyter-lsp scans for language servers at every start and the kit uses none: a class starts faster without.
    extensions = {"jupyter_lsp": False, **{name: on for name in INSTRUCTOR_EXTENSIONS}}
    files = {
        "nbgrader_config.py": "\n".join(nbgrader) + "\n",
        "labconfig/page_config.json": json.dumps({"disabledExtensions": {n: not on for n in INSTRUCTOR_TOOLS},
                                                  "lockedExtensions": {n: True for n in INSTRUCTOR_TOOLS}}, indent=1),
        "jupyter_server_config.json": json.dumps({"ServerApp": {"jpserver_extensions": extensions}}, indent=1),
        # jupyter_core writes this marker into the config folder on first use (the formgrader does so); the
        # folder is shared and read-only to the hub's users, so it is written here.
        "migrated": "written by rlhf-course exchange roles\n",
        "data/kernels/python3/kernel.json": json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--InteractiveShellApp.extensions=autograder.classhub.memory_notice"],
            "display_name": "Python 3 (ipykernel)", "language": "python", "metadata": {"debugger": True}}, indent=1),
    }
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, leaving the submission readable by its learner and the group of the exchange's
    inbound folder (the instructors, on the class hub) only: nbgrader leaves it readable, and its folder
    writable, by everyone, hidden by its random name alone. The learners' config on the hub selects it."""

    def do_copy(self, src, dest, log=None):
        """nbgrader's copy (same exclusions and size limits), made folder by folder and file by file,
        without copying the source's modes: every folder keeps the set-group-id bit it inherits from
        inbound/, so every file in it (timestamp.txt and the secret, written after) has the instructors'
        group. (A learner cannot give a file that group afterwards: they are not in it.)"""
        if not os.path.abspath(dest).startswith(os.path.abspath(self.inbound_path) + os.sep):
            return super().do_copy(src, dest, log)
        size = self.get_size(src)
        if size > 1000 * self.coursedir.max_dir_size:
            raise RuntimeError(f"Directory size is too big. Size is {size}, maximum size is "
                               f"{1000 * self.coursedir.max_dir_size}")
        ignore = ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                 max_file_size=self.coursedir.max_file_size, log=self.log)
        for folder, subfolders, files in os.walk(src):
            skipped = ignore(folder, subfolders + files)
            subfolders[:] = [d for d in subfolders if d not in skipped]
            target = os.path.normpath(os.path.join(dest, os.path.relpath(folder, src)))
            os.makedirs(target, exist_ok=True)
            for name in files:
                if name not in skipped:
                    shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))

    def set_perms(self, dest, fileperms, dirperms):
        super().set_perms(dest, fileperms=0o660, dirperms=0o770)

    def copy_files(self):
        super().copy_files()
        os.chmod(os.path.join(self.inbound_path, self.assignment_filename), 0o770)  # nbgrader made it 777


def _config(course: Path, exchange_root: Path, lab: str, course_id: str):
    c = base_config(course)
    c.CourseDirectory.course_id = course_id
    c.CourseDirectory.assignment_id = lab
    c.Exchange.root = str(exchange_root)
    return c


def _owner(path: str) -> str:
    try:
        return pwd.getpwuid(os.stat(path).st_uid).pw_name
    except KeyError:
        return f"uid {os.stat(path).st_uid}"


class OwnedCollect(ExchangeCollect):
    """nbgrader's collect, choosing each learner's submission among those their own system user made:
    one whose folder belongs to someone else is refused (listed in ``refused``), where nbgrader would
    warn and collect it."""

    refused: list[str] = []

    def init_src(self):
        super().init_src()
        self.refused = []
        if not self.check_owner:
            return
        student = self.coursedir.student_id or "*"
        mine: dict[str, list[dict]] = {}
        for path in glob.glob(os.path.join(self.inbound_path, f"{student}+{self.coursedir.assignment_id}+*")):
            record, owner = self._path_to_record(path), _owner(path)
            if owner == record["username"]:
                mine.setdefault(owner, []).append(record)
            else:
                self.refused.append(f"{record['filename']} (in {record['username']}'s name, made by {owner})")
                self.log.error("refused %s: it names %s but %s made it", path, record["username"], owner)
        self.src_records = [self._choose(records) for records in mine.values()]

    def _choose(self, records: list[dict]) -> dict:
        records = self._sort_by_timestamp(records)  # as nbgrader chooses: the latest, or the latest before
        if self.duedate is not None and self.before_duedate:  # the due date when asked to
            return next((r for r in records if r["timestamp"] <= self.duedate), records[0])
        return records[0]


def _run(kind: str, course: Path, exchange_root: Path, lab: str, course_id: str, **traits):
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import default as X

    c = _config(course, exchange_root, lab, course_id)
    for name, value in traits.items():
        setattr(getattr(c, kind), name, value)
    coursedir = CourseDirectory(config=c)
    step_class = OwnedCollect if kind == "ExchangeCollect" else getattr(X, kind)
    step = step_class(coursedir=coursedir, authenticator=Authenticator(config=c), config=c)
    step.log.setLevel(logging.WARNING)
    step.start()
    return step


def check_exchange(exchange_root: Path) -> None:
    if not exchange_root.is_dir():
        raise FileNotFoundError(f"no exchange folder {exchange_root}: the hub creates it (make hub), or create it "
                                f"with `mkdir -p {exchange_root} && chmod 1777 {exchange_root}`")


def release(course: Path, solutions: Path, labs: list[str], exchange_root: Path, course_id: str = COURSE_ID) -> None:
    """Generate each lab from ``solutions`` into ``course`` and release it to the exchange (again if released)."""
    check_exchange(exchange_root)
    known = find_labs(solutions)
    for lab in labs:
        if lab not in known:
            raise ValueError(f"no lab {lab!r} in {solutions} (labs: {', '.join(known) or 'none'})")
        generate_assignment(course, solutions, lab, force=True)
        _run("ExchangeReleaseAssignment", course, exchange_root, lab, course_id, force=True)


def collect(course: Path, labs: list[str], exchange_root: Path, course_id: str = COURSE_ID,
            check_owner: bool = True) -> tuple[Path, list[str]]:
    """Copy every learner's latest submission of ``labs`` into ``course/submitted``; returns that folder
    and the submissions refused.

    ``check_owner``: refuse a submission whose folder does not belong to the system user of the learner
    it names (off only where every server runs as one system user, as on a demo hub)."""
    check_exchange(exchange_root)
    refused = []
    for lab in labs:
        step = _run("ExchangeCollect", course, exchange_root, lab, course_id, update=True, check_owner=check_owner)
        refused += step.refused
    return course / "submitted", refused


def import_roster(course: Path, roster: Path) -> list[str]:
    """Add (or update) the students of ``roster`` (the hub's roster CSV) in ``course``'s gradebook, so
    that the formgrader lists the whole class, those who never submitted included; returns their ids."""
    from nbgrader.api import Gradebook

    students = read_roster(roster)
    course.mkdir(parents=True, exist_ok=True)
    with Gradebook(db_url(course), COURSE_ID) as gradebook:
        for s in students:
            gradebook.update_or_create_student(s.id, first_name=s.first_name or None, last_name=s.last_name or None,
                                               email=s.email or None)
    return [s.id for s in students]


def return_feedback(course: Path, graded: Path, labs: list[str], exchange_root: Path,
                    course_id: str = COURSE_ID) -> list[tuple[str, str]]:
    """Release the feedback pages ``grade`` wrote under ``graded/feedback`` for the collected
    submissions of ``labs``; returns the (student, lab) pairs released."""
    from autograder.grading.records import Record

    check_exchange(exchange_root)
    released = []
    for lab in labs:
        for page in sorted((graded / "feedback").glob(f"*/{lab}.html")):
            student = page.parent.name
            submitted = course / "submitted" / student / lab
            if not (submitted / "submission_secret.txt").is_file():
                continue  # not a submission collected from the exchange
            result = graded / "results" / student / f"{lab}.json"
            if not result.is_file() or not Record.load(result).is_for(tree_digest(submitted)):
                logging.getLogger(__name__).warning(
                    "%s/%s: the collected submission is not the one graded (grade again); no feedback released",
                    student, lab)
                continue
            target = course / "feedback" / student / lab
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, target / f"{lab}.html")
            for name in ("timestamp.txt", "submission_secret.txt"):
                shutil.copy2(submitted / name, target / name)
            released.append((student, lab))
        _run("ExchangeReleaseFeedback", course, exchange_root, lab, course_id)
    return released
