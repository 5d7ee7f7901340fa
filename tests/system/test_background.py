"""The suite's background runs (tests/_background.py): each names a real function and fixture, a
run's value, skip or error reaches the test that reads it, and a run that dies is reported."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import _background as background

TESTS = Path(__file__).resolve().parents[1]

WORKS = '''
import pytest

def value(scratch):
    (scratch / "made.txt").write_text("here")
    return {"scratch": scratch, "n": 3}

def skipped(scratch):
    pytest.skip("no sandbox here")

def priority(scratch):
    import os
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)

def broken(scratch):
    raise ValueError("the class could not be graded")
'''


def test_every_run_is_a_function_of_its_module_read_by_a_fixture_of_that_name():
    for fixture, (path, function) in background.WORK.items():
        tree = ast.parse((TESTS / path).read_text())
        defs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert function in defs, f"{path} has no function {function}"
        assert [a.arg for a in defs[function].args.args] and len(defs[function].args.args) == 1, \
            f"{path}::{function} takes the scratch folder only"
        assert fixture in defs, f"{path} has no fixture {fixture}"
        calls = [ast.unparse(n) for n in ast.walk(defs[fixture]) if isinstance(n, ast.Call)]
        assert any(c.startswith(f"background.result('{fixture}', {function})") for c in calls), calls


def test_the_modules_that_wait_go_last_in_the_order_they_run():
    assert background.order(["tmp_path"]) == 0
    ranks = [background.order([name, "tmp_path"]) for name in background.WORK]
    assert ranks == sorted(ranks) and ranks[0] > 0 and len(set(ranks)) == len(ranks)


@pytest.fixture
def fake_works(tmp_path, monkeypatch):
    """Works of this test's own, and a state of their own: the session's background run (this
    session may have one) is neither read, nor stopped, nor forgotten here."""
    (tmp_path / "works.py").write_text(WORKS)
    works = {name: (str(tmp_path / "works.py"), name) for name in ("value", "skipped", "priority", "broken")}
    monkeypatch.setattr(background, "WORK", works)
    monkeypatch.setattr(background, "_run", {})
    monkeypatch.setattr(background, "_inline", [])
    yield works
    background.stop()


def test_a_runs_value_skip_and_error_reach_the_test(fake_works, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    works = [f"{name}={path}::{function}" for name, (path, function) in fake_works.items() if name != "priority"]
    assert background.main([str(folder), *works]) == 0
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    background._run.update(folder=folder, proc=done, names=["value", "skipped", "broken"])
    value = background.result("value", None)
    assert value["n"] == 3 and (value["scratch"] / "made.txt").read_text() == "here"
    with pytest.raises(pytest.skip.Exception, match="no sandbox here"):
        background.result("skipped", None)
    with pytest.raises(pytest.fail.Exception, match="ValueError: the class could not be graded"):
        background.result("broken", None)


def test_a_run_that_dies_is_reported_with_its_log(fake_works, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "log.txt").write_text("value: started\nKilled\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(9)"])
    dead.wait()
    background._run.update(folder=folder, proc=dead, names=["value"])
    with pytest.raises(pytest.fail.Exception, match=r"(?s)stopped \(exit status 9\).*Killed"):
        background.result("value", None, poll_s=0.01)


def test_a_run_no_background_process_started_is_computed_in_the_foreground(fake_works, tmp_path):
    seen = []
    assert background.result("value", lambda scratch: seen.append(scratch) or 7) == 7
    assert seen and seen[0].is_dir()
    background.stop()
    assert not seen[0].exists(), "its scratch folder is removed when the session ends"


def test_a_background_process_runs_idle_and_in_the_order_of_the_table(fake_works):
    background.start(["broken", "priority", "value"])
    try:
        proc, folder = background._run["proc"], background._run["folder"]
        assert background._run["names"] == ["value", "priority", "broken"]
        proc.wait(timeout=60)  # before any wait in result(), which would give it the normal policy
        assert background.result("value", None)["n"] == 3
        policy, nice = background.result("priority", None)
        assert policy == os.SCHED_IDLE or nice >= background.NICE, (policy, nice)
        assert "value:" in (folder / "log.txt").read_text()
    finally:
        background.stop()


def test_the_first_wait_gives_the_background_and_its_children_the_normal_policy_again():
    """Idle until the foreground waits on it; then every process and thread under it runs normally,
    else a machine kept busy by something else would never let it finish."""
    tree = ("import subprocess, sys, threading, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "print(child.pid, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", tree], stdout=subprocess.PIPE, text=True,
                            preexec_fn=background._lower_priority)
    try:
        child = int(proc.stdout.readline())
        threads = [int(t) for pid in (proc.pid, child) for t in os.listdir(f"/proc/{pid}/task")]
        assert len(threads) >= 3
        if os.sched_getscheduler(proc.pid) != os.SCHED_IDLE:
            pytest.skip("this machine refuses the idle policy")
        assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_IDLE}
        assert set(background._tree(proc.pid)) == {proc.pid, child}
        background._promote(proc.pid)
        assert {os.sched_getscheduler(t) for t in threads} == {os.SCHED_OTHER}
    finally:
        proc.kill()
        proc.wait()
        os.kill(child, 9)
