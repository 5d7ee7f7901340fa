"""The suite's three long class runs, started in the background as the session begins.

Grading every lab's copies, grading the hostile corpus, and running every solution for its claims
take about twelve of CI's minutes on 2 cores, and each is one module fixture that its tests only
read. The rest of the suite leaves a core idle for most of its time (one pytest process, servers,
browsers and timeouts). So when pytest has chosen its tests, ``start`` runs the ones those tests need,
one after another, in a separate process under the idle CPU policy (it gets the CPU time no other
process wants, and the foreground keeps its speed), and the modules that read them run last. Each
module's fixture calls ``result``, which waits for its run and returns what the run returned. From
the first wait on, the background takes the normal policy again: the foreground has nothing left to
do, and on a machine that something else keeps busy an idle run would get no CPU at all.

Only single-threaded work belongs here (the labs' tiny models run on one thread): a run of two torch
threads, one of them starved, spins (the world's rebuild took 581 s here against 123 s alone).

The runs are plain functions of their test module (``WORK``), called with a scratch folder of their
own; what they return is pickled. They run in a process of their own, with the environment the
session started with: no test's monkeypatch of a module or of ``os.environ`` can reach them.

    python tests/_background.py FOLDER NAME=MODULE::FUNCTION...   # what ``start`` runs
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parent

WORK = {  # fixture name -> (its test module, the function that computes it); in the order they run
    "graded_labs": ("labs/test_labs.py", "grade_the_labs"),
    "graded_attacks": ("labs/test_hostile_corpus.py", "grade_the_attacks"),
    "verdicts": ("labs/test_claims.py", "run_the_claims"),
}
NICE = 10
"""Where the idle policy is refused: a nice value instead."""
LIMITS = {"cell_timeout": 900, "budget": 3600}
"""The grader's limits for the classes graded here: a run may wait while the foreground has the
cores, and that wait must never read as a slow cell. What the limits cut is tested on the fixture
class (tests/grader/test_grading.py); how long the labs take, by the benchmark."""

_run: dict = {}  # "folder", "proc", "names" of the session's background process
_inline: list[Path] = []  # scratch folders of runs computed in the foreground


def order(fixturenames) -> int:
    """Where a test goes: 0 for the rest of the suite, then one place per run (those that wait last)."""
    return next((1 + i for i, name in enumerate(WORK) if name in fixturenames), 0)


def start(names: list[str]) -> None:
    """Run the named works, in ``WORK``'s order, in one background process."""
    names = [n for n in WORK if n in names]
    if not names or _run:
        return
    folder = Path(tempfile.mkdtemp(prefix="rlhf-tests-background-"))
    log = open(folder / "log.txt", "w")
    works = [f"{name}={WORK[name][0]}::{WORK[name][1]}" for name in names]
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(folder), *works],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_lower_priority)
    log.close()
    _run.update(folder=folder, proc=proc, names=names)


def _lower_priority() -> None:
    """In the child: the idle policy (CPU time no other process wants; inherited by every process it
    starts), else nice ``NICE``. A nice value alone cost the foreground a third of its speed in CI."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, max(NICE, os.getpriority(os.PRIO_PROCESS, 0)))


def _promote(root: int) -> None:
    """Give ``root`` and every process under it, each thread of them, the normal CPU policy again
    (what a process starts from then on inherits it). A process that is gone or refuses is left."""
    for _ in range(2):  # again, for the processes started while the first pass ran
        for pid in _tree(root):
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in threads:
                try:
                    os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                    os.setpriority(os.PRIO_PROCESS, tid, 0)
                except (AttributeError, OSError):
                    pass


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])  # the name in (...) may hold spaces
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def result(name: str, work, poll_s: float = 0.5):
    """What the background run ``name`` returned (waiting for it), or ``work(scratch)`` computed
    here and now when no background process runs it (pytest -p no:... or a run outside pytest)."""
    import pytest

    if name not in _run.get("names", []):
        scratch = Path(tempfile.mkdtemp(prefix=f"rlhf-tests-{name}-"))
        _inline.append(scratch)  # the tests read files under it: removed when the session ends
        return work(scratch)
    folder, proc = _run["folder"], _run["proc"]
    done = folder / f"{name}.pickle"
    if not done.exists() and not _run.get("promoted"):
        # The foreground waits from here on: the background may have the CPU. Left idle, it would get
        # none on a machine that something else keeps busy, and never finish.
        _promote(proc.pid)
        _run["promoted"] = True
    while not done.exists():
        if proc.poll() is not None and not done.exists():
            pytest.fail(f"the background run {name!r} stopped (exit status {proc.returncode}) before it "
                        f"finished:\n{_tail(folder)}")
        time.sleep(poll_s)
    outcome = pickle.loads(done.read_bytes())
    print(f"background run {name!r}: {outcome['seconds']:.0f} s; its log:\n{_tail(folder, 6000)}")
    if "skip" in outcome:
        pytest.skip(outcome["skip"])
    if "error" in outcome:
        pytest.fail(f"the background run {name!r} failed:\n{outcome['error']}")
    return outcome["value"]


def stop() -> None:
    """End the background process (the session is over, or was cut short) and remove its folder."""
    proc = _run.get("proc")
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    for folder in [_run.get("folder"), *_inline]:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    _run.clear()
    _inline.clear()


def _tail(folder: Path, chars: int = 4000) -> str:
    try:
        return (folder / "log.txt").read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _call(path: str, function: str, scratch: Path):
    if str((TESTS / path).parent) not in sys.path:  # what pytest puts on sys.path for a test module
        sys.path.insert(0, str((TESTS / path).parent))
    spec = importlib.util.spec_from_file_location(f"background_{Path(path).stem}", TESTS / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)(scratch)


def main(argv: list[str]) -> int:
    folder, works = Path(argv[0]), [arg.partition("=") for arg in argv[1:]]
    sys.path.insert(0, str(TESTS))  # as the suite's conftest.py does: _box, _processes, corpus
    import pytest

    for name, _, work in works:
        start_s = time.perf_counter()
        (folder / name).mkdir()
        try:
            outcome = {"value": _call(*work.split("::"), folder / name)}
        except pytest.skip.Exception as exc:
            outcome = {"skip": str(exc)}
        except BaseException:  # noqa: BLE001 - reported by the test that reads it
            outcome = {"error": traceback.format_exc()}
        outcome["seconds"] = time.perf_counter() - start_s
        print(f"{name}: {outcome['seconds']:.0f} s", flush=True)
        partial = folder / f"{name}.pickle.part"
        partial.write_bytes(pickle.dumps(outcome))
        partial.rename(folder / f"{name}.pickle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
