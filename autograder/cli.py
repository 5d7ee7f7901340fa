"""The ``rlhf-course`` command: ``release``, ``grade``, ``check`` (here) and the
helper package's ``build-world`` and ``info`` (``rlhf_helpers.cli``).

Each command returns an exit status: 0 on success, 1 when the work found a
problem (labs out of date, a submission that could not be graded, a notebook
short of full marks), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from autograder.course.release import build_release, release_diff
from autograder.grading.validation import validate_source
from autograder.labs import default_solutions_dir, find_labs, source_notebook
from autograder.bench.peers import METHODS as PEER_METHODS


def _solutions(args) -> Path:
    return Path(args.solutions) if args.solutions else default_solutions_dir()


def _settings(args, jobs: int = 1):
    from autograder.grading.records import Settings

    return Settings(cell_timeout=args.cell_timeout, budget=args.budget, memory_mb=args.memory_mb,
                    sandbox=not args.no_sandbox, jobs=jobs)


def _add_limits(p: argparse.ArgumentParser) -> None:
    from autograder.grading.records import Settings

    d = Settings()
    p.add_argument("--solutions", default=None, help="folder of source labs (default: ./solutions, else the kit's)")
    p.add_argument("--cell-timeout", type=int, default=d.cell_timeout, metavar="S",
                   help=f"seconds each cell may run (default {d.cell_timeout})")
    p.add_argument("--budget", type=int, default=d.budget, metavar="S",
                   help=f"seconds a whole notebook may run (default {d.budget})")
    p.add_argument("--memory-mb", type=int, default=d.memory_mb, metavar="MB",
                   help=f"memory cap per notebook, MiB (default {d.memory_mb})")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run notebooks WITHOUT bubblewrap isolation (no network/filesystem protection): "
                        "only for your own notebooks on a machine without bwrap")


def cmd_release(args: argparse.Namespace) -> int:
    """Regenerate (or with --check, compare) the student copies."""
    solutions = _solutions(args)
    labs_dir = Path(args.labs) if args.labs else solutions.parent / "labs"
    lab_ids = find_labs(solutions)
    if not lab_ids:
        print(f"no labs in {solutions} (expected {solutions}/<lab_id>/<lab_id>.ipynb)")
        return 0
    bad = {lab: validate_source(source_notebook(solutions, lab)) for lab in lab_ids}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        for lab, problems in bad.items():
            print(f"{lab}: invalid source", *[f"  {p}" for p in problems], sep="\n", file=sys.stderr)
        print("fix the sources above (see docs/AUTHORING.md), then run `rlhf-course release` again", file=sys.stderr)
        return 1
    if args.check:
        diff = release_diff(solutions, labs_dir)
        if diff:
            print(f"{labs_dir} is out of date with {solutions}:", *[f"  {d}" for d in diff], sep="\n")
            print("run `rlhf-course release` and commit the result")
            return 1
        print(f"{labs_dir} is in sync with {solutions} ({len(lab_ids)} labs)")
        return 0
    stale = [p for p in labs_dir.iterdir() if p.is_dir() and p.name not in lab_ids] if labs_dir.is_dir() else []
    build_release(solutions, labs_dir, lab_ids)
    for lab in lab_ids:
        print(f"released {labs_dir / lab / (lab + '.ipynb')}")
    for p in stale:
        print(f"warning: {p} has no source in {solutions}; delete it if the lab was removed", file=sys.stderr)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade a class; exit 1 when any submission could not be graded."""
    from autograder.grading.batch import grade_class, parse_shard

    out = Path(args.out)
    shard = parse_shard(args.shard) if args.shard else None
    records = grade_class(Path(args.submissions), out, _solutions(args), _settings(args, args.jobs), shard=shard,
                          due=_due(args.due), restart=args.restart)
    if shard:
        print(f"shard {shard[0]}/{shard[1]}: {len(records)} submission(s); when every shard is graded, "
              f"gather them with `rlhf-course merge {args.submissions} --out MERGED_DIR SHARD_DIR...`")
    return _summary(records, out)


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge the --out folders of a sharded class into one; exit 1 when any submission has no result."""
    from autograder.grading.batch import merge_shards

    out = Path(args.out)
    records = merge_shards(Path(args.submissions), [Path(p) for p in args.shards], out, _solutions(args),
                           due=_due(args.due))
    return _summary(records, out, written_in="each shard's course folder (SHARD_DIR/course)")


def cmd_exchange(args: argparse.Namespace) -> int:
    """nbgrader's exchange for a class hub: release, collect, feedback."""
    import os

    from autograder.classhub import exchange as X

    course = Path(args.course_dir).resolve()
    root = Path(args.exchange or os.environ.get("RLHF_EXCHANGE") or "/srv/nbgrader/exchange")
    if args.action == "learner-defaults":
        X.learner_defaults()
        print("nbgrader's instructor tools are off in this environment (learners see the Assignments panel only)")
        return 0
    if args.action == "roles":
        if not args.config_root:
            raise ValueError("exchange roles needs --config-root DIR")
        for role in ("learner", "instructor"):
            folder = X.write_role_config(Path(args.config_root) / role, role, root, args.course_id)
            print(f"{role}: JUPYTER_CONFIG_DIR={folder}")
        return 0
    if args.action == "roster":
        if len(args.labs) != 1:
            raise ValueError("exchange roster needs one file: the class roster (CSV with an 'id' column)")
        ids = X.import_roster(course, Path(args.labs[0]))
        print(f"{len(ids)} student(s) of {args.labs[0]} are in {course / 'gradebook.db'}")
        return 0
    if not args.labs:
        raise ValueError(f"exchange {args.action} needs the lab ids, e.g. lab1_sampling")
    if args.action == "release":
        X.release(course, _solutions(args), args.labs, root, args.course_id)
        print(f"released {', '.join(args.labs)} to {root}/{args.course_id}: learners fetch them from the "
              "Assignments tab")
    elif args.action == "collect":
        submitted, refused = X.collect(course, args.labs, root, args.course_id, check_owner=not args.no_owner_check)
        n = sum(1 for lab in args.labs for _ in submitted.glob(f"*/{lab}/{lab}.ipynb"))
        print(f"collected {n} submission(s) into {submitted}; grade them with "
              f"`rlhf-course grade {submitted} --out GRADED_DIR`")
        for item in refused:
            print(f"REFUSED {item}: a submission counts only when the learner's own user made it")
    else:
        if not args.graded:
            raise ValueError("exchange feedback needs --graded OUT_DIR (the --out folder of `rlhf-course grade`)")
        released = X.return_feedback(course, Path(args.graded), args.labs, root, args.course_id)
        print(f"released feedback for {len(released)} submission(s): learners fetch it from the Assignments tab")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the kit's speed; exit 1 when a lab is over its budget (or, with --claims, a claim fails)."""
    from autograder.bench import timing as bench

    peers = None
    if args.peers:
        peers = {"seeds": args.peer_seeds, "seconds": args.peer_seconds, "threads": args.peer_threads,
                 "methods": tuple(args.peer_methods), "env": Path(args.peer_env) if args.peer_env else None}
    claims = {"seeds": args.claim_seeds, "jobs": args.claim_jobs} if args.claims else None
    report = bench.run(_solutions(args), Path(args.out), args.labs or None, args.repeats, args.busy,
                       args.skip_blocks, args.skip_labs, args.skip_grading, peers=peers, claims=claims)
    print(f"wrote {Path(args.out) / 'BENCHMARKS.md'} and benchmarks.json")
    for problem in report.problems:
        print(f"OVER BUDGET: {problem}", file=sys.stderr)
    for line in bench.claim_failures(report):
        print(f"A CLAIM FAILS: {line}", file=sys.stderr)
    return 1 if report.problems or bench.claim_failures(report) else 0


def _due(text: str | None):
    """``--due``: a date and time (ISO 8601 or nbgrader's format); UTC unless it names a zone."""
    if not text:
        return None
    from datetime import timezone

    from dateutil import parser

    try:
        when = parser.parse(text)
    except (ValueError, OverflowError):
        raise ValueError(f"--due {text!r}: give a date and time, e.g. '2026-12-14 17:00 UTC'") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _summary(records, out: Path, written_in: str | None = None) -> int:
    errors = [r for r in records if not r.graded]
    print(f"graded {len(records) - len(errors)} of {len(records)} submissions; "
          f"wrote {out / 'grades.csv'}, {out / 'feedback'}/ and {out / 'similarity.csv'}")
    flagged = [r for r in records if r.flags]
    if flagged:
        print(f"{len(flagged)} submission(s) flagged for a look (column `flags`; side by side in {out / 'similarity'}/)")
    if any(r.pending_max for r in records):
        print(f"written answers are pending: grade them with `nbgrader formgrader` in {written_in or out / 'course'}")
    for r in errors:
        print(f"ERROR {r.student_id}/{r.lab_id}: {'; '.join(r.notes)}", file=sys.stderr)
    return 1 if errors else 0


def format_check(record) -> str:
    """The report ``check`` prints: per-question points, failures with hints, the total."""
    lines = [f"{record.lab_id}: checked as the grader would (hidden tests included)"]
    for c in record.cells:
        if c.pending:
            lines.append(f"  {c.grade_id:32s}   pending / {c.max:g}  (written answer, graded by hand)")
        else:
            mark = "ok " if c.score == c.max else "FAIL"
            lines.append(f"  {c.grade_id:32s} {mark} {c.score or 0:g} / {c.max:g}")
    if record.notes:
        lines.append("what to look at:")
        lines += [f"  - {n}" for n in record.notes]
    if not record.graded:
        lines.append("RESULT: could not be graded")
    else:
        pending = f" (+ {record.pending_max:g} points of written answers, graded by hand)" if record.pending_max else ""
        verdict = "full marks" if record.auto_score == record.auto_max else "not yet full marks"
        lines.append(f"RESULT: {record.auto_score:g} / {record.auto_max:g} auto-graded points{pending}: {verdict}")
    return "\n".join(lines)


def check_notebook(notebook: Path, solutions: Path, settings, lab: str | None = None):
    """Grade one notebook exactly as ``grade`` would (same code path, a private class of one)."""
    from autograder.grading.batch import grade_class
    from autograder.grading.worker import learner_files

    lab = lab or notebook.stem
    if lab not in find_labs(solutions):
        raise ValueError(f"{notebook.name}: no lab {lab!r} in {solutions} (pass --lab LAB_ID, "
                         f"labs: {', '.join(find_labs(solutions)) or 'none'})")
    with tempfile.TemporaryDirectory(prefix="rlhf-check-") as tmp:
        sub = Path(tmp) / "submissions" / "me" / lab
        sub.mkdir(parents=True)
        if notebook.is_file():
            shutil.copy2(notebook, sub / f"{lab}.ipynb")
        for extra in learner_files(notebook.parent):
            shutil.copy2(extra, sub / extra.name)
        (record,) = grade_class(Path(tmp) / "submissions", Path(tmp) / "out", solutions, settings,
                                progress=lambda line: None)
        return record


def cmd_check(args: argparse.Namespace) -> int:
    """Check one notebook; exit 0 only at full auto-graded marks."""
    notebook = Path(args.notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"no notebook {notebook}")
    record = check_notebook(notebook, _solutions(args), _settings(args), args.lab)
    print(format_check(record))
    full = record.graded and record.auto_score == record.auto_max
    return 0 if full else 1


def _friendly(func):
    """Report a missing or unusable sandbox as one line with the fix, not a traceback."""
    def run(args: argparse.Namespace) -> int:
        from autograder.grading.sandbox import SandboxUnavailable

        try:
            return func(args)
        except SandboxUnavailable as exc:
            print(f"rlhf-course: error: {exc}", file=sys.stderr)
            return 2
    run.__doc__ = func.__doc__
    return run


def _register_release(subparsers) -> None:
    p = subparsers.add_parser("release", help="regenerate the student copies labs/ from solutions/ (nbgrader)")
    p.add_argument("--solutions", default=None, help="folder of source labs (default: ./solutions, else the kit's)")
    p.add_argument("--labs", default=None, help="where to write the student copies (default: labs/ beside solutions/)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when labs/ is out of date")
    p.set_defaults(func=cmd_release)


def _register_grade(subparsers) -> None:
    p = subparsers.add_parser("grade", help="autograde a class of submissions in a sandbox, in parallel")
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="folder of <student_id>/<lab_id>/<lab_id>.ipynb")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="where grades.csv, feedback/ and the nbgrader course go")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="submissions graded at once (default 1)")
    p.add_argument("--restart", action="store_true", help="forget earlier results in OUT_DIR and grade everything again")
    p.add_argument("--due", default=None, metavar="WHEN",
                   help="flag submissions whose nbgrader timestamp is later (e.g. '2026-12-14 17:00 UTC'; UTC if no zone)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="grade only shard K (0 to N-1) of N, by a stable hash of student and lab; "
                        "gather the shards with `rlhf-course merge`")
    _add_limits(p)
    p.set_defaults(func=_friendly(cmd_grade))


def _register_merge(subparsers) -> None:
    p = subparsers.add_parser("merge", help="gather the --out folders of a class graded in shards into one")
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="the class's folder, as given to every shard")
    p.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="the --out folder of each shard, 0 to N-1")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="where the merged grades.csv, feedback/ and "
                                                                   "similarity report go")
    p.add_argument("--solutions", default=None, help="folder of source labs (default: ./solutions, else the kit's)")
    p.add_argument("--due", default=None, metavar="WHEN", help="as for grade")
    p.set_defaults(func=_friendly(cmd_merge))


def _register_exchange(subparsers) -> None:
    p = subparsers.add_parser("exchange", help="a class hub: release labs, collect submissions, return feedback "
                                               "through nbgrader's exchange")
    p.add_argument("action", choices=["release", "collect", "feedback", "roster", "roles", "learner-defaults"],
                   help="roster ROSTER.csv: put the class's students in the gradebook (--course-dir); "
                        "roles: write the learner and instructor Jupyter config folders under --config-root; "
                        "learner-defaults: turn nbgrader's instructor tools off in this Python environment")
    p.add_argument("labs", nargs="*", metavar="LAB_ID", help="the labs (roster: the roster file)")
    p.add_argument("--config-root", default=None, help="roles: where to write learner/ and instructor/")
    p.add_argument("--graded", default=None, metavar="OUT_DIR", help="feedback: the --out folder of `grade`")
    p.add_argument("--course-dir", default="course", help="the instructor's nbgrader course folder (default ./course)")
    p.add_argument("--exchange", default=None,
                   help="nbgrader's exchange folder (default $RLHF_EXCHANGE, else /srv/nbgrader/exchange)")
    p.add_argument("--course-id", default="rlhf-course", help="the course id in the exchange (default rlhf-course)")
    p.add_argument("--solutions", default=None, help="folder of source labs (default: ./solutions, else the kit's)")
    p.add_argument("--no-owner-check", action="store_true",
                   help="collect: accept submissions not made by the learner they name (hubs whose servers all run "
                        "as one system user: demos and tests only)")
    p.set_defaults(func=_friendly(cmd_exchange))


def _register_bench(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure the kit's speed (labs, grading, PPO and DPO steps); "
                                            "exit 1 when a lab is over its budget")
    p.add_argument("--labs", nargs="*", default=None, metavar="LAB_ID", help="only these labs (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported (default 3)")
    p.add_argument("--busy", action="store_true", help="also run each lab beside a process that keeps a core busy")
    p.add_argument("--skip-blocks", action="store_true", help="skip the building blocks (world, sampling, PPO, DPO)")
    p.add_argument("--skip-labs", action="store_true", help="skip running the labs top to bottom")
    p.add_argument("--skip-grading", action="store_true", help="skip grading the labs")
    p.add_argument("--peers", action="store_true", help="also train the kit's PPO beside classic TRL PPO "
                   "(trl 0.11.4, in an environment created once from the package registry), TRL's RLOO and GRPO, "
                   "and lab 6's DPO, interleaved over seeds")
    p.add_argument("--peer-seeds", type=int, default=3, help="seeds per method (default 3)")
    p.add_argument("--peer-seconds", type=float, default=60.0, help="seconds of training per run (default 60)")
    p.add_argument("--peer-threads", type=int, default=1, help="torch threads of every run (default 1, the kit's "
                   "choice for the tiny world)")
    p.add_argument("--peer-methods", nargs="+", default=list(PEER_METHODS), choices=PEER_METHODS,
                   help="which methods (default all)")
    p.add_argument("--peer-env", default=None, help="the classic-TRL environment's folder "
                   "(default ~/.cache/rlhf-course/peers-venv)")
    p.add_argument("--claims", action="store_true", help="also re-run each lab on several seeds and report every "
                   "claim of its learner copy that fails for one (autograder/course/claims.py); exit 1 then")
    p.add_argument("--claim-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default 0 1 2 3 4)")
    p.add_argument("--claim-jobs", type=int, default=2, help="notebooks run at a time (default 2)")
    p.add_argument("--out", default="bench-out", help="where BENCHMARKS.md and benchmarks.json go (default bench-out)")
    p.add_argument("--solutions", default=None, help="folder of source labs (default: ./solutions, else the kit's)")
    p.set_defaults(func=_friendly(cmd_bench))


def _register_check(subparsers) -> None:
    p = subparsers.add_parser("check", help="check your notebook as the grader would, hidden tests included")
    p.add_argument("notebook", metavar="NOTEBOOK", help="your lab notebook, e.g. labs/lab1_sampling/lab1_sampling.ipynb")
    p.add_argument("--lab", default=None, help="lab id (default: the notebook's file name)")
    _add_limits(p)
    p.set_defaults(func=_friendly(cmd_check))


def register(subparsers) -> None:
    """Add ``release``, ``grade``, ``merge``, ``exchange``, ``bench`` and ``check`` to the ``rlhf-course`` command."""
    _register_release(subparsers)
    _register_grade(subparsers)
    _register_merge(subparsers)
    _register_exchange(subparsers)
    _register_bench(subparsers)
    _register_check(subparsers)


def build_parser() -> argparse.ArgumentParser:
    from rlhf_helpers import cli as helpers_cli

    parser = argparse.ArgumentParser(
        prog="rlhf-course", description="RLHF / DPO course kit: build the model world, release and grade labs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helpers_cli.register(sub)
    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rlhf_helpers import cli as helpers_cli

    return helpers_cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
