"""run_side_by_side: results in order and as one after another, errors that say which run, no copy left behind."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _processes import alive, wait_until_gone

from rlhf_helpers.config import side_by_side_workers
from rlhf_helpers.parallel import run_side_by_side
from rlhf_helpers.rloo_grpo import HeldOutCurve

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="side by side forks on Linux only")

TOUCHED: list[str] = []


def _seeded_job(name: str, seed: int) -> dict:
    """A job that seeds what it draws, reports where it ran, and changes a global (that must not leak)."""
    import torch

    TOUCHED.append(name)
    draw = torch.randn(3, generator=torch.Generator().manual_seed(seed))
    return {"name": name, "draw": draw, "pid": os.getpid(), "threads": torch.get_num_threads()}


def test_side_by_side_gives_the_results_of_one_after_another_in_order():
    jobs = [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]
    apart = run_side_by_side(_seeded_job, jobs, workers=2)
    alone = run_side_by_side(_seeded_job, jobs, workers=1)
    assert [r["name"] for r in apart] == [r["name"] for r in alone] == list("abcde")
    for a, b in zip(apart, alone):
        assert a["draw"].equal(b["draw"])
    assert {r["pid"] for r in alone} == {os.getpid()}              # workers=1: in this process
    assert os.getpid() not in {r["pid"] for r in apart}              # workers=2: each run in a copy
    assert len({r["pid"] for r in apart}) == len(jobs)
    assert {r["threads"] for r in apart} == {1}
    assert TOUCHED == list("abcde")                                   # only the in-process runs changed it here


def _fails_or_sleeps(kind: str, pid_file: str) -> str:
    Path(pid_file).write_text(str(os.getpid()))
    if kind == "fail":
        sleeper = Path(pid_file).with_name("sleeper")
        for _ in range(600):  # until the other run has started
            if sleeper.exists() and sleeper.read_text():
                break
            time.sleep(0.05)
        raise ValueError("this run's learning rate is negative")
    time.sleep(120)
    return kind


def test_a_failing_run_names_itself_and_stops_the_others(tmp_path):
    jobs = [("sleep", str(tmp_path / "sleeper")), ("fail", str(tmp_path / "failer"))]
    with pytest.raises(RuntimeError, match=r"the run \('fail'.*failed in its copy of the kernel") as err:
        run_side_by_side(_fails_or_sleeps, jobs, workers=2)
    assert "ValueError: this run's learning rate is negative" in str(err.value)  # the job's own traceback
    sleeper = int((tmp_path / "sleeper").read_text())
    assert not alive(sleeper), "the other run's copy outlived the error"


def _returns(what: str):
    if what == "lambda":
        return lambda: 0
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_result_that_cannot_travel_back_or_a_killed_copy_is_a_clear_error():
    with pytest.raises(RuntimeError, match="could not be sent back.*return plain data"):
        run_side_by_side(_returns, [("lambda",), ("lambda",)], workers=2)
    with pytest.raises(RuntimeError, match=r"the run \('kill',\) was killed by signal 9 \(out of memory\?\)"):
        run_side_by_side(_returns, [("kill",), ("kill",)], workers=2)


def test_a_curve_travels_back_without_its_evaluate_function():
    curve = HeldOutCurve(lambda model: {"reward": 1.0}, every=1)
    curve.start("m")
    curve.step(1, "m")
    back = pickle.loads(pickle.dumps(curve))
    assert back.points == curve.points and back.seconds == curve.seconds and back.evaluate is None
    assert back.series("reward") == curve.series("reward")


def test_workers_follow_the_environment_then_the_cores(monkeypatch):
    monkeypatch.delenv("RLHF_COURSE_PROFILE", raising=False)
    monkeypatch.setenv("RLHF_COURSE_WORKERS", "3")
    assert side_by_side_workers() == 3
    monkeypatch.setenv("RLHF_COURSE_WORKERS", "two")
    with pytest.raises(ValueError, match="RLHF_COURSE_WORKERS should be a whole number"):
        side_by_side_workers()
    monkeypatch.delenv("RLHF_COURSE_WORKERS")
    assert side_by_side_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("RLHF_COURSE_PROFILE", "hub")  # a real course model: one run at a time
    assert side_by_side_workers() == 1


def test_the_copies_stop_when_the_kernel_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from rlhf_helpers.parallel import run_side_by_side

        def job(i):
            Path({str(tmp_path)!r}, f"child-{{i}}").write_text(str(os.getpid()))
            time.sleep(120)

        run_side_by_side(job, [(0,), (1,)], workers=2)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        files = [tmp_path / "child-0", tmp_path / "child-1"]
        deadline = time.monotonic() + 60
        while not all(f.exists() and f.read_text() for f in files):
            assert parent.poll() is None and time.monotonic() < deadline, "the copies did not start"
            time.sleep(0.05)
        children = [int(f.read_text()) for f in files]
    finally:
        parent.kill()
        parent.wait()
    wait_until_gone(children, 30, "a copy outlived its kernel")


@pytest.mark.slow
def test_in_a_notebook_the_copies_print_nothing_and_the_kernel_carries_on(tmp_path):
    """A copy shares the kernel's output channel: what it prints, displays or shows as a bar must stay out."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(textwrap.dedent("""
            import logging
            from IPython.display import display
            from tqdm.auto import tqdm
            from rlhf_helpers.parallel import run_side_by_side

            def job(i):
                print("printed by a copy")
                display("displayed by a copy")
                for _ in tqdm(range(3), desc="a copy's bar"):
                    pass
                logging.getLogger("lab").warning("logged by a copy")
                return i * i

            print(run_side_by_side(job, [(1,), (2,), (3,)], workers=2, desc="runs"))
        """)),
        nbformat.v4.new_code_cell('print("the kernel carries on")'),
    ])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = "\n".join(str(o) for c in nb.cells for o in c.outputs)
    assert "[1, 4, 9]" in shown and "the kernel carries on" in shown
    assert "by a copy" not in shown and "a copy's bar" not in shown


def test_usable_cores_follow_a_containers_cpu_limit(tmp_path):
    from rlhf_helpers.config import usable_cores

    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path) == affinity                      # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == affinity                      # v2, no limit
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cores(tmp_path) == 1                             # half a CPU: one run at a time
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == affinity                      # v1, no limit
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{100000 * (affinity + 5)}\n")
    assert usable_cores(tmp_path) == affinity                      # a limit above the affinity
    if affinity > 1:
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
        assert usable_cores(tmp_path) == 2                         # 1.5 CPUs, rounded up


def test_a_logging_handler_on_a_closed_stream_does_not_stop_the_copies():
    """Seen in CI: an earlier test left a handler whose stream was closed; the copy must not flush it."""
    import logging

    stream = open(os.devnull, "w")  # noqa: SIM115 - closed below, as pytest's capture files were
    handler = logging.StreamHandler(stream)
    logging.getLogger("left-behind").addHandler(handler)
    stream.close()
    try:
        assert [r["name"] for r in run_side_by_side(_seeded_job, [("x", 1), ("y", 2)], workers=2)] == ["x", "y"]
    finally:
        logging.getLogger("left-behind").removeHandler(handler)
