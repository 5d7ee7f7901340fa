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
Feedback is released keyed by each submission's secret, so a learner can fetch
only the feedback of their own submission.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from . import course as C

COURSE_ID = "rlhf-course"
INSTRUCTOR_TOOLS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                    "@jupyter/nbgrader:course-list")
"""nbgrader's JupyterLab plugins for instructors (``learner_defaults`` turns them off)."""
INSTRUCTOR_EXTENSIONS = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")


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
    off (and locked). 'instructor': the same exchange, the course folder ``~/course``, the tools on."""
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
    ]
    # jupyter-lsp scans for language servers at every start and the kit uses none: a class starts faster without.
    extensions = {"jupyter_lsp": False, **{name: on for name in INSTRUCTOR_EXTENSIONS}}
    files = {
        "nbgrader_config.py": "\n".join(nbgrader) + "\n",
        "labconfig/page_config.json": json.dumps({"disabledExtensions": {n: not on for n in INSTRUCTOR_TOOLS},
                                                  "lockedExtensions": {n: True for n in INSTRUCTOR_TOOLS}}, indent=1),
        "jupyter_server_config.json": json.dumps({"ServerApp": {"jpserver_extensions": extensions}}, indent=1),
    }
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _config(course: Path, exchange_root: Path, lab: str, course_id: str):
    c = C.base_config(course)
    c.CourseDirectory.course_id = course_id
    c.CourseDirectory.assignment_id = lab
    c.Exchange.root = str(exchange_root)
    return c


def _run(kind: str, course: Path, exchange_root: Path, lab: str, course_id: str, **traits) -> None:
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import default as X

    c = _config(course, exchange_root, lab, course_id)
    for name, value in traits.items():
        setattr(getattr(c, kind), name, value)
    coursedir = CourseDirectory(config=c)
    step = getattr(X, kind)(coursedir=coursedir, authenticator=Authenticator(config=c), config=c)
    step.log.setLevel(logging.WARNING)
    step.start()


def check_exchange(exchange_root: Path) -> None:
    if not exchange_root.is_dir():
        raise FileNotFoundError(f"no exchange folder {exchange_root}: the hub creates it (make hub), or create it "
                                f"with `mkdir -p {exchange_root} && chmod 1777 {exchange_root}`")


def release(course: Path, solutions: Path, labs: list[str], exchange_root: Path, course_id: str = COURSE_ID) -> None:
    """Generate each lab from ``solutions`` into ``course`` and release it to the exchange (again if released)."""
    check_exchange(exchange_root)
    known = C.find_labs(solutions)
    for lab in labs:
        if lab not in known:
            raise ValueError(f"no lab {lab!r} in {solutions} (labs: {', '.join(known) or 'none'})")
        C.generate_assignment(course, solutions, lab, force=True)
        _run("ExchangeReleaseAssignment", course, exchange_root, lab, course_id, force=True)


def collect(course: Path, labs: list[str], exchange_root: Path, course_id: str = COURSE_ID,
            check_owner: bool = True) -> Path:
    """Copy every learner's latest submission of ``labs`` into ``course/submitted``; returns that folder.

    ``check_owner``: refuse a submission whose files are not owned by the learner it names (nbgrader's
    check; off only where every server runs as one system user, as on a test hub)."""
    check_exchange(exchange_root)
    for lab in labs:
        _run("ExchangeCollect", course, exchange_root, lab, course_id, update=True, check_owner=check_owner)
    return course / "submitted"


def return_feedback(course: Path, graded: Path, labs: list[str], exchange_root: Path,
                    course_id: str = COURSE_ID) -> list[tuple[str, str]]:
    """Release the feedback pages ``grade`` wrote under ``graded/feedback`` for the collected
    submissions of ``labs``; returns the (student, lab) pairs released."""
    from .worker import Record

    check_exchange(exchange_root)
    released = []
    for lab in labs:
        for page in sorted((graded / "feedback").glob(f"*/{lab}.html")):
            student = page.parent.name
            submitted = course / "submitted" / student / lab
            if not (submitted / "submission_secret.txt").is_file():
                continue  # not a submission collected from the exchange
            result = graded / "results" / student / f"{lab}.json"
            if not result.is_file() or not Record.load(result).is_for(C.tree_digest(submitted)):
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
