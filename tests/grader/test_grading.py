"""The grading path (issue 3) on the fixture lab and its hostile class.

``tests/fixtures/class/<student>/fixlab/fixlab.ipynb`` holds one student per
way a submission can go wrong (see ``tests/fixtures/make_fixtures.py`` and its
``EXPECTED`` table). The class is graded once, with ``--jobs 2``, through the
real ``rlhf-course grade`` command; the tests then read the CSV, the gradebook,
the feedback pages and the executed notebooks.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from _processes import alive, wait_until_gone

from autograder.cells import leaks, secret_lines
from autograder.grading.gradebook import db_url
from autograder.grading.validation import validate_source
from autograder.grading.sandbox import probe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SOLUTIONS = FIXTURES / "solutions"
CLASS = FIXTURES / "class"
LAB = "fixlab"
# Small limits keep the fixture class fast; the loops and the memory hog hit them on purpose.
LIMITS = ["--cell-timeout", "10", "--budget", "120", "--memory-mb", "2048", "--solutions", str(SOLUTIONS)]

sys.path.insert(0, str(FIXTURES))
from make_fixtures import EXPECTED, FLAGS, build_class, write_all  # noqa: E402

SANDBOX_PROBLEM = probe()  # None where bubblewrap works (CI installs it: `make system-deps`)


def rlhf_course(*args: str) -> int:
    from autograder.cli import main

    return main(list(args))


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """The whole fixture class, graded once with --jobs 2."""
    if SANDBOX_PROBLEM:
        pytest.skip(SANDBOX_PROBLEM)
    out = tmp_path_factory.mktemp("graded")
    start = time.perf_counter()
    os.environ["RLHF_TEST_GRADER_MARKER"] = "grader-only"  # the snooping student looks for it in the box
    try:
        rc = rlhf_course("grade", str(CLASS), "--out", str(out), "--jobs", "2", *LIMITS)
    finally:
        os.environ.pop("RLHF_TEST_GRADER_MARKER", None)
    (out / "seconds.txt").write_text(f"{time.perf_counter() - start:.1f}")
    assert rc == 0, "every fixture submission must be graded (status=graded)"
    return out


# ---------------------------------------------------------------------------- fixtures and sources

def test_fixture_source_is_valid_and_built_from_text():
    assert validate_source(SOLUTIONS / LAB / f"{LAB}.ipynb") == []
    from autograder.course.authoring import text_to_notebook

    built = text_to_notebook((FIXTURES / "fixlab.txt").read_text())
    committed = nbformat.read(SOLUTIONS / LAB / f"{LAB}.ipynb", as_version=4)
    assert nbformat.writes(built) == nbformat.writes(committed), \
        "rebuild with: python -m autograder.course.authoring build tests/fixtures/fixlab.txt tests/fixtures/solutions/fixlab/fixlab.ipynb"


def test_fixtures_up_to_date(tmp_path):
    shutil.copytree(SOLUTIONS, tmp_path / "solutions")
    for path in write_all(tmp_path):
        rel = path.relative_to(tmp_path)
        assert (FIXTURES / rel).read_bytes() == path.read_bytes(), \
            f"{rel} is stale: run .venv/bin/python tests/fixtures/make_fixtures.py"
    assert sorted(p.name for p in CLASS.iterdir()) == sorted(build_class()) == sorted(EXPECTED)


def test_validate_source_reports_problems(tmp_path):
    nb = nbformat.read(SOLUTIONS / LAB / f"{LAB}.ipynb", as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("test_")]
    tests[0].source += "\np[0]"  # a trailing value: nbgrader would read it as partial credit
    tests[1].metadata.nbgrader["grade_id"] = tests[0].metadata.nbgrader["grade_id"]
    tests[2].metadata.nbgrader["points"] = 0
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    text = "\n".join(map(str, validate_source(path)))
    assert "end without a value" in text and "duplicate grade_id" in text and "points > 0" in text
    path.write_text("{ not json")
    assert "cannot be read" in str(validate_source(path)[0])


def test_release_and_check(tmp_path, capsys):
    labs = tmp_path / "labs"
    assert rlhf_course("release", "--solutions", str(SOLUTIONS), "--labs", str(labs)) == 0
    nb = nbformat.read(labs / LAB / f"{LAB}.ipynb", as_version=4)
    text = nbformat.writes(nb)
    assert "BEGIN HIDDEN TESTS" not in text and "1001.0" not in text and "SECRET_SENTINEL" not in text
    assert "raise NotImplementedError()" in text and "math.exp(x - m)" not in text
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert "do not edit" in nb.metadata["rlhf_course"]["generated"]
    assert (labs / LAB / f"{LAB}.ipynb").read_bytes() == (FIXTURES / "labs" / LAB / f"{LAB}.ipynb").read_bytes()
    assert rlhf_course("release", "--check", "--solutions", str(SOLUTIONS), "--labs", str(labs)) == 0
    nb.cells[0].source += "\nhand edit"
    nbformat.write(nb, labs / LAB / f"{LAB}.ipynb")
    capsys.readouterr()
    assert rlhf_course("release", "--check", "--solutions", str(SOLUTIONS), "--labs", str(labs)) == 1
    assert "out of date" in capsys.readouterr().out


def test_release_refuses_invalid_source(tmp_path, capsys):
    bad = tmp_path / "solutions" / "badlab"
    bad.mkdir(parents=True)
    nb = nbformat.read(SOLUTIONS / LAB / f"{LAB}.ipynb", as_version=4)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "top_k":
            c.source = c.source.replace("### END SOLUTION", "")
    nbformat.write(nb, bad / "badlab.ipynb")
    assert rlhf_course("release", "--solutions", str(tmp_path / "solutions"), "--labs", str(tmp_path / "labs")) == 1
    assert "unbalanced BEGIN/END SOLUTION" in capsys.readouterr().err
    assert not (tmp_path / "labs" / "badlab").exists()


def test_grade_needs_bwrap(monkeypatch, tmp_path):
    import autograder.grading.batch as G

    monkeypatch.setattr(G, "bwrap_path", lambda: None)
    from autograder.grading.sandbox import SandboxUnavailable

    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        G.grade_class(CLASS, tmp_path, SOLUTIONS, G.Settings())


def test_sandbox_mounts_scratch_before_the_kit(monkeypatch):
    """A kit (venv, helpers) cloned under /tmp must stay visible in the box: the
    sandbox's own /tmp is mounted first, and the read-only binds go on top of it."""
    import autograder.grading.sandbox as S

    monkeypatch.setattr(S, "bwrap_path", lambda: "/usr/bin/bwrap")
    cfg = S.SandboxConfig(work_dir="/tmp/x/work", ipc_dir="/tmp/x/ipc", ro_paths=["/tmp/clone/.venv"])
    cmd = S.bwrap_command(cfg, ["python"])
    tmpfs = next(i for i in range(len(cmd) - 1) if cmd[i:i + 2] == ["--tmpfs", "/tmp"])
    ro = next(i for i in range(len(cmd) - 1) if cmd[i:i + 2] == ["--ro-bind", "/tmp/clone/.venv"])
    assert tmpfs < ro, "a tmpfs mounted after a bind hides it"
    assert tmpfs < cmd.index(cfg.work_dir) and tmpfs < cmd.index(cfg.ipc_dir)


# ---------------------------------------------------------------------------- the hostile class

@pytest.mark.slow
def test_csv_layout(graded):
    with open(graded / "grades.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["student_id", "lab_id", "test_softmax_visible", "test_softmax_hidden", "test_top_k",
                      "written_topk", "auto_score", "auto_max", "pending_max", "total", "max_score", "status", "reason",
                      "flags"]
    assert set(read_csv(graded / "grades.csv")) == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_case_scores_its_real_work(graded, student):
    (vis, hid, topk), pending, words = EXPECTED[student]
    row = read_csv(graded / "grades.csv")[student]
    assert row["status"] == "graded", row["reason"]
    got = (row["test_softmax_visible"], row["test_softmax_hidden"], row["test_top_k"])
    assert got == (str(vis), str(hid), str(topk)), f"{student}: {row['reason']}"
    assert row["auto_score"] == str(vis + hid + topk) and row["auto_max"] == "6" and row["max_score"] == "8"
    assert row["written_topk"] == ("pending" if pending else "0")
    assert row["pending_max"] == ("2" if pending else "0")
    for word in words:
        assert word in row["reason"], f"{student}: reason {row['reason']!r} should mention {word!r}"
    if not words:
        assert row["reason"] == "", f"{student}: unexpected reason {row['reason']!r}"
    assert (graded / "feedback" / student / f"{LAB}.html").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_flags_are_raised_for_what_the_instructor_should_see(graded, student):
    """Reaching into the grading machinery and copies moved into a helper are flagged; honest
    submissions carry no flag but their similarity to the solutions (issue 27)."""
    flags = read_csv(graded / "grades.csv")[student]["flags"]
    for word in FLAGS.get(student, []):
        assert word in flags, f"{student}: flags {flags!r} should mention {word!r}"
    if student not in FLAGS:
        others = [f for f in flags.split("; ") if f and not f.startswith("similar to")]
        assert not others, f"{student}: unexpected flags {others}"


@pytest.mark.slow
def test_long_runs_no_test_needs_are_not_run_while_grading(graded):
    """Cells marked grading=skip (here a 30 s sleep, past the 10 s cell limit) are not run: no timeout,
    and the feedback says so."""
    from autograder.grading.worker import html_text

    assert "timed out" not in read_csv(graded / "grades.csv")["good"]["reason"]
    assert "not run while grading" in html_text((graded / "feedback" / "good" / f"{LAB}.html").read_text())


def test_a_cell_that_needs_a_skipped_one_is_refused(tmp_path):
    nb = nbformat.read(SOLUTIONS / LAB / f"{LAB}.ipynb", as_version=4)
    needs = next(i for i, c in enumerate(nb.cells) if "the sweep is" in c.source)
    nb.cells[needs].metadata.pop("rlhf_course")
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    assert any("reads 'SWEEP'" in str(p) for p in validate_source(path))


@pytest.mark.slow
def test_the_provenance_report_lists_what_each_function_relied_on(graded):
    with open(graded / "provenance.csv", newline="") as f:
        rows = {(r["student_id"], r["function"]): r for r in csv.DictReader(f)}
    assert rows[("good", "softmax")]["library"] == "math.exp" and rows[("good", "softmax")]["flags"] == ""
    assert "heapq" in rows[("handed_off", "top_k")]["library"]
    assert "rlhf_helpers.observations" in rows[("tripwire_switch", "top_k")]["machinery"]
    assert "tripwire_switch" in (graded / "provenance.html").read_text()


@pytest.mark.slow
def test_gradebook_agrees_and_written_answers_wait_for_the_instructor(graded):
    from nbgrader.api import Gradebook

    rows = read_csv(graded / "grades.csv")
    with Gradebook(db_url(graded / "course"), "rlhf-course") as gb:
        assert sorted(s.id for s in gb.students) == sorted(EXPECTED)
        for student, row in rows.items():
            sub = gb.find_submission(LAB, student)
            grades = {g.name: g for nb in sub.notebooks for g in nb.grades}
            for gid in ("test_softmax_visible", "test_softmax_hidden", "test_top_k"):
                assert f"{grades[gid].score:g}" == row[gid], (student, gid)
            written = grades["written_topk"]
            assert written.needs_manual_grade == (row["written_topk"] == "pending"), student


@pytest.mark.slow
def test_feedback_never_shows_hidden_tests(graded):
    from autograder.grading.worker import html_text

    source = nbformat.read(graded / "course" / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    released = nbformat.read(graded / "course" / "release" / LAB / f"{LAB}.ipynb", as_version=4)
    secrets = secret_lines(source, released)
    assert len(secrets) >= 5
    for page in (graded / "feedback").rglob("*.html"):
        text = html_text(page.read_text())
        assert not leaks(text, secrets), page
        assert "SECRET_SENTINEL" not in text and "BEGIN HIDDEN TESTS" not in text and "1001.0" not in text, page
    good = html_text((graded / "feedback" / "good" / f"{LAB}.html").read_text())
    assert "softmax([1.0, 2.0, 3.0])" in good, "the visible tests are shown"
    # The exfiltrating student printed the hidden tests from inside its function: nothing of it is shown.
    bad = html_text((graded / "feedback" / "exfiltrate" / f"{LAB}.html").read_text())
    assert "not shown in feedback" in bad
    reasons = (graded / "grades.csv").read_text()
    assert not leaks(reasons, secrets)


@pytest.mark.slow
def test_feedback_carries_no_hidden_input_or_expected_value(graded):
    """What the learner's code saw during hidden tests (even encoded, even printed, displayed or raised
    in a later cell) and what a failing hidden test expected never reach the feedback or the reason."""
    import base64

    from autograder.grading.worker import html_text

    hidden_inputs = [[1000.0, 1001.0], [3.0, 1.0, 0.2], [0.5, 0.2, 0.05, 0.25]]
    leaked = [base64.b64encode(repr(x).encode()).decode() for x in hidden_inputs]
    rows = read_csv(graded / "grades.csv")
    for student in ("exfiltrate_encoded", "lookup_table", "wrong_hidden"):
        page = html_text((graded / "feedback" / student / f"{LAB}.html").read_text())
        for text in (page, rows[student]["reason"]):
            assert not any(code in text for code in leaked), (student, text)
            assert "1001.0" not in text and "0.836019" not in text and "0.2]" not in text, (student, text)
    visible = base64.b64encode(repr([1.0, 2.0, 3.0]).encode()).decode()
    page = html_text((graded / "feedback" / "exfiltrate_encoded" / f"{LAB}.html").read_text())
    assert visible in page, "what the learner's code printed before any hidden test ran is shown"
    assert "ValueError: (the message is not shown in feedback" in page, "a later cell's error keeps its type, not its message"


def _outputs(graded: Path, student: str) -> str:
    nb = nbformat.read(graded / "course" / "autograded" / student / LAB / f"{LAB}.ipynb", as_version=4)
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_sandbox_hides_other_work_and_protects_the_gradebook(graded):
    text = _outputs(graded, "snoop")
    assert "SNOOP-WROTE" in text, "the snooping cell ran"
    assert "SNOOP-FOUND" not in text, f"the sandbox exposed files: {text}"
    wrote = text.split("SNOOP-WROTE", 1)[1]
    assert "rlhf_helpers" not in wrote, "the helper package must be read-only in the sandbox"
    assert not Path("/root/x").exists() and not Path("/tmp/gradebook.db").exists()
    import rlhf_helpers

    assert "pwned" not in Path(rlhf_helpers.__file__).read_text()
    assert "SNOOP-USER 1000 student" in text, "the kernel runs as the box's unprivileged user"
    assert "SNOOP-GRADER" not in text, "/proc in the box shows nothing of the grader or the sandbox launcher"
    assert "SNOOP-ENV []" in text
    assert read_csv(graded / "grades.csv")["good"]["auto_score"] == "6"


@pytest.mark.slow
def test_a_kernel_cannot_unbox_its_restart(graded):
    """The kernel rewrote every config it could find, then crashed to be restarted:
    the restarted kernel is still boxed (the sandbox config is not in a folder it can write)."""
    text = _outputs(graded, "escape_sandbox")
    assert "TAMPERED" in text
    assert "HOST=sandbox BOXED" in text and "ESCAPED" not in text, text


@pytest.mark.slow
def test_sandbox_has_no_network(graded):
    text = _outputs(graded, "network")
    assert "NETWORK" in text and "CONNECTED" not in text, text
    assert text.count("blocked") == 3


@pytest.mark.slow
def test_restarted_kernel_keeps_earlier_work(graded):
    # segfault in top_k's test: softmax's tests (before it) still pass, and the
    # kernel is restarted for the rest; exit_kernel dies in softmax's tests and
    # top_k (after it) still earns its points because earlier cells are replayed.
    rows = read_csv(graded / "grades.csv")
    assert rows["segfault"]["auto_score"] == "3" and rows["exit_kernel"]["test_top_k"] == "3"


@pytest.mark.slow
def test_resume_after_the_grader_is_killed_and_no_stale_scores(tmp_path):
    """Kill a running `grade`, re-run it: finished work is kept, the rest is graded;
    a changed submission is graded again (its old score never survives)."""
    if SANDBOX_PROBLEM:
        pytest.skip(SANDBOX_PROBLEM)
    subs = tmp_path / "subs"
    for student in ("good", "infinite_loop", "raises"):
        shutil.copytree(CLASS / student, subs / student)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder.cli", "grade", str(subs), "--out", str(out), *LIMITS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "results" / "good" / f"{LAB}.json").exists():  # 'good' is graded first (sorted)
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert workers, "the grader has a worker"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-way through infinite_loop
    proc.wait()
    # The workers run in their own sessions (the kill did not reach them): they stop on their
    # own. One left grading wrote into `out` beside the re-run below (CI, 2026-12-03).
    wait_until_gone(workers, 30, "a worker outlived its grader")
    assert not (out / "grades.csv").exists()
    assert not (out / "results" / "raises" / f"{LAB}.json").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming: 1 submission(s) already graded, 2 to go" in rerun.stdout
    rows = read_csv(out / "grades.csv")
    assert [rows[s]["auto_score"] for s in ("good", "infinite_loop", "raises")] == ["6", "3", "3"]

    # The student resubmits a blank notebook: it is graded again, not kept at 6.
    shutil.copy(CLASS / "blank" / LAB / f"{LAB}.ipynb", subs / "good" / LAB / f"{LAB}.ipynb")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 submission(s) already graded, 1 to go" in again.stdout
    assert read_csv(out / "grades.csv")["good"]["auto_score"] == "0"


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def test_a_record_is_for_one_submission_source_and_limits():
    """The test before an earlier record is kept (resume), merged (shards) or returned (exchange)."""
    from autograder.grading.records import Record

    r = Record("ann", LAB, submission_sha256="sub", source_sha256="src", settings="lim")
    assert r.is_for("sub") and r.is_for("sub", "src") and r.is_for("sub", "src", "lim")
    assert not r.is_for("other") and not r.is_for("sub", "new source") and not r.is_for("sub", "src", "new limits")
    assert not Record.failed("ann", LAB, "why").is_for("sub")


def test_one_run_at_a_time_writes_to_an_out_folder(tmp_path, monkeypatch, capsys):
    """A second `grade` into a folder another run holds waits for it, then says why it stops."""
    import autograder.grading.batch as G

    monkeypatch.setattr(G, "bwrap_path", lambda: None)  # needs no sandbox: it never grades
    shutil.copytree(CLASS / "good", tmp_path / "subs" / "good")
    earlier = tmp_path / "out" / "results" / "good" / f"{LAB}.json"  # the other run's work so far
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")
    held = G.lock_out(tmp_path / "out")
    monkeypatch.setattr(G, "LOCK_WAIT_S", 0.5)
    try:
        rc = rlhf_course("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--no-sandbox", "--restart",
                         *LIMITS)
    finally:
        os.close(held)
    captured = capsys.readouterr()
    assert rc == 2 and "waiting for another grading run to stop writing to" in captured.out
    assert "another grading run is still writing to" in captured.err and "another --out folder" in captured.err
    assert earlier.read_text() == "{}", "--restart must not delete what another run is writing"


@pytest.mark.slow
def test_a_worker_stops_when_its_grader_is_gone(tmp_path):
    """The worker's own watch, without a sandbox or nbgrader: kill the parent, the worker goes."""
    script = ("import subprocess, sys, time\n"
              "w = subprocess.Popen([sys.executable, '-c', 'from autograder.grading.worker import stop_with_parent; "
              "import time; stop_with_parent(0.05); print(\"watching\", flush=True); time.sleep(60)'], "
              "start_new_session=True)\n"
              "print(w.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    worker = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "watching"
    assert alive(worker)
    parent.kill()
    parent.wait()
    wait_until_gone([worker], 20, "the worker outlived its parent")


@pytest.mark.slow
def test_unknown_lab_and_missing_notebook_are_reported(tmp_path, capsys):
    if SANDBOX_PROBLEM:
        pytest.skip(SANDBOX_PROBLEM)
    (tmp_path / "subs" / "ann" / "lab99").mkdir(parents=True)
    (tmp_path / "subs" / "bob" / LAB).mkdir(parents=True)
    (tmp_path / "subs" / "bob" / LAB / "Untitled.ipynb").write_text("{}")
    rc = rlhf_course("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), *LIMITS)
    assert rc == 1
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["ann"]["status"] == "error" and "unknown lab 'lab99'" in rows["ann"]["reason"]
    assert rows["bob"]["status"] == "graded" and rows["bob"]["total"] == "0"
    assert "no fixlab.ipynb in the submission (found: Untitled.ipynb)" in rows["bob"]["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("student", ["good", "wrong_hidden", "invalid_json"])
def test_check_gives_the_same_verdict_as_grade(graded, student, capsys):
    row = read_csv(graded / "grades.csv")[student]
    capsys.readouterr()
    rc = rlhf_course("check", str(CLASS / student / LAB / f"{LAB}.ipynb"), *LIMITS)
    report = capsys.readouterr().out
    assert rc == (0 if row["auto_score"] == row["auto_max"] else 1), report
    for gid in ("test_softmax_visible", "test_softmax_hidden", "test_top_k"):
        line = next(ln for ln in report.splitlines() if ln.strip().startswith(gid))
        assert f" {row[gid]} / " in line, (gid, line, row)
    assert f"RESULT: {row['auto_score']} / 6 auto-graded points" in report
    if row["written_topk"] == "pending":
        assert "pending / 2" in report and "graded by hand" in report
    if student == "wrong_hidden":
        assert "large logits overflow: subtract the max first" in report  # the failing test's hint
        assert "1000" not in report, "never the hidden test's inputs"


@pytest.mark.slow
def test_no_sandbox_mode_grades_the_same(tmp_path, monkeypatch):
    """--no-sandbox (for machines without bwrap) keeps the limits and the verdict."""
    import autograder.grading.batch as G

    monkeypatch.setattr(G, "bwrap_path", lambda: None)  # as on a machine without bubblewrap
    shutil.copytree(CLASS / "wrong_hidden", tmp_path / "subs" / "wrong_hidden")
    rc = rlhf_course("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--no-sandbox", *LIMITS)
    assert rc == 0
    row = read_csv(tmp_path / "out" / "grades.csv")["wrong_hidden"]
    assert (row["auto_score"], row["test_softmax_hidden"]) == ("4", "0")

    # --restart forgets the earlier result (which a plain re-run would keep) and grades again
    result = tmp_path / "out" / "results" / "wrong_hidden" / f"{LAB}.json"
    result.write_text(result.read_text().replace('"auto_score": 4.0', '"auto_score": 5.0'))
    rc = rlhf_course("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--no-sandbox", *LIMITS)
    assert rc == 0 and read_csv(tmp_path / "out" / "grades.csv")["wrong_hidden"]["auto_score"] == "5"
    rc = rlhf_course("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--no-sandbox", "--restart", *LIMITS)
    assert rc == 0 and read_csv(tmp_path / "out" / "grades.csv")["wrong_hidden"]["auto_score"] == "4"


@pytest.mark.slow
def test_a_worker_that_overruns_is_killed_and_the_class_goes_on(tmp_path, monkeypatch):
    """The parent's last line of defence: a worker past budget + margin is killed;
    that submission gets status=error and no score, the next one is graded."""
    if SANDBOX_PROBLEM:
        pytest.skip(SANDBOX_PROBLEM)
    import autograder.grading.batch as G

    # A cell may run for 100 s, but the parent stops any worker after 120 - 60 = 60 s: the endless
    # loop is cut by the parent, while an ordinary submission finishes well inside it. The loop
    # sleeps (the parent's deadline is what is tested here, and a spinning one would take a core
    # from the rest of the suite for that minute; the spinning loops meet the cell timeout in the
    # fixture class).
    monkeypatch.setattr(G, "WORKER_MARGIN_S", -60)
    for student in ("infinite_loop", "raises"):
        shutil.copytree(CLASS / student, tmp_path / "subs" / student)
    path = tmp_path / "subs" / "infinite_loop" / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(path, as_version=4)
    spin = "def softmax(logits):\n    while True:\n        pass"
    cell = next(c for c in nb.cells if c.source == spin)
    cell.source = "def softmax(logits):\n    import time\n    while True:\n        time.sleep(0.5)"
    nbformat.write(nb, path)
    limits = ["--cell-timeout", "100", "--budget", "120", "--memory-mb", "2048", "--solutions", str(SOLUTIONS)]
    rc = rlhf_course("grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), *limits)
    assert rc == 1
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["infinite_loop"]["status"] == "error" and rows["infinite_loop"]["total"] == ""
    assert "took longer than 60 s and was stopped" in rows["infinite_loop"]["reason"]
    assert rows["raises"]["status"] == "graded" and rows["raises"]["auto_score"] == "3"
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url(tmp_path / "out" / "course"), "rlhf-course") as gb:
        with pytest.raises(MissingEntry):
            gb.find_submission(LAB, "infinite_loop")  # no half-written score left behind


@pytest.mark.slow
def test_students_are_in_the_gradebook_before_any_worker_starts(tmp_path, monkeypatch):
    """One learner's two labs graded at once by two workers must not both create the learner in
    the gradebook (one failed with 'UNIQUE constraint failed: student.id'): the parent adds the
    class's students first."""
    import autograder.grading.batch as G
    from autograder.grading.records import Record, Settings
    from nbgrader.api import Gradebook

    if SANDBOX_PROBLEM:
        pytest.skip(SANDBOX_PROBLEM)
    solutions = tmp_path / "solutions"
    for lab in ("fixlab", "fixlab2"):
        shutil.copytree(SOLUTIONS / "fixlab", solutions / lab)
        (solutions / lab / "fixlab.ipynb").rename(solutions / lab / f"{lab}.ipynb")
        for student in ("good", "bob"):
            (tmp_path / "subs" / student / lab).mkdir(parents=True)
            shutil.copy(CLASS / "good" / LAB / f"{LAB}.ipynb", tmp_path / "subs" / student / lab / f"{lab}.ipynb")
    seen = {}

    def run_tasks(tasks, workers, course, hard_limit, progress):
        with Gradebook(db_url(course), "rlhf-course") as gb:
            seen["students"] = sorted(s.id for s in gb.students)
        return {(t.student, t.lab): Record.failed(t.student, t.lab, "not run here") for t in tasks}

    monkeypatch.setattr(G, "_run_tasks", run_tasks)
    G.grade_class(tmp_path / "subs", tmp_path / "out", solutions, Settings(jobs=2), progress=lambda line: None)
    assert seen["students"] == ["bob", "good"]
