"""Independent training runs side by side, one per CPU core, in forked copies of the kernel.

The tiny world trains on one CPU thread (:func:`rlhf_helpers.config.training_threads`),
so on a 2-core laptop a sweep of independent runs (lab 7's frontier: PPO and RLOO
at other β, DPO at two β) leaves a core idle. :func:`run_side_by_side` forks the
kernel once per run, at most :func:`rlhf_helpers.config.side_by_side_workers` at
a time: each copy already holds the models, data and functions of the notebook,
runs one job on one thread and sends its result back (pickled), and nothing it
changes reaches the notebook. Where forking is not safe or brings nothing (not
Linux, one free core, a GPU, a real course model) the jobs run one after another
in the kernel itself, with the same results: a job must seed what it draws.

=================================================  ================================================
``run_side_by_side(fn, jobs, desc=...)``           ``[fn(*job) for job in jobs]``, one per free core
=================================================  ================================================

Nothing here seeds or changes global state at import.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_side_by_side"]

POLL_S = 0.05
"""How often the kernel looks for finished copies."""


def run_side_by_side(fn: Callable[..., Any], jobs: Sequence[tuple], *, workers: int | None = None,
                     desc: str | None = None) -> list[Any]:
    """``[fn(*job) for job in jobs]``, each job in a forked copy of this process, ``workers`` at a time.

    Args:
        fn: a function of one job's arguments; it must seed whatever it draws at random
            (each copy starts from the kernel's state when it was forked).
        jobs: tuples of arguments, one per run.
        workers: copies alive at once; default :func:`rlhf_helpers.config.side_by_side_workers`.
            1 runs the jobs in this process, one after another.
        desc: label of the progress bar (None: no bar).

    Returns:
        The results in the order of ``jobs``. Results travel back pickled: return plain
        data (numbers, lists, dicts, tensors, a :class:`~rlhf_helpers.rloo_grpo.HeldOutCurve`),
        not a trainer.

    Raises:
        RuntimeError: side by side, a job raised (the message holds its traceback), its result
            could not be pickled, or its copy was killed (e.g. out of memory). The other copies
            are stopped; an interrupt of the kernel stops them too. One after another, a job's
            own exception propagates as it is.
    """
    from tqdm.auto import tqdm

    from rlhf_helpers.config import side_by_side_workers

    jobs = [tuple(job) for job in jobs]
    workers = side_by_side_workers() if workers is None else int(workers)
    bar = tqdm(total=len(jobs), desc=desc, disable=desc is None)
    try:
        if workers <= 1 or len(jobs) <= 1 or not _can_fork():
            results = []
            for job in jobs:
                results.append(fn(*job))
                bar.update()
            return results
        return _forked(fn, jobs, workers, bar)
    finally:
        bar.close()


def _can_fork() -> bool:
    """Fork only on Linux (macOS's system libraries are not fork-safe once threads ran)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _forked(fn: Callable[..., Any], jobs: list[tuple], workers: int, bar: Any) -> list[Any]:
    """Run each job in a child; the parent only starts, watches and collects them."""
    results: list[Any] = [None] * len(jobs)
    running: dict[int, int] = {}  # pid -> job index
    waiting = list(range(len(jobs)))
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        out = Path(tmp)
        try:
            while waiting or running:
                while waiting and len(running) < workers:
                    i = waiting.pop(0)
                    running[_start(fn, jobs[i], out / f"{i}.pickle")] = i
                time.sleep(POLL_S)
                for pid, i in list(running.items()):
                    try:
                        done, status = os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:  # reaped by someone else: its result file tells
                        done, status = pid, 0
                    if not done:
                        continue
                    del running[pid]
                    results[i] = _collect(out / f"{i}.pickle", status, jobs[i])
                    bar.update()
        finally:  # an error, or the kernel interrupted: no copy outlives the call
            for pid in running:
                _kill(pid)
    return results


def _start(fn: Callable[..., Any], job: tuple, result_path: Path) -> int:
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    # The child: never return into the kernel's code, never run its exit handlers.
    try:
        _quiet_child(parent)
        payload = ("ok", fn(*job))
    except BaseException:  # noqa: BLE001 - everything is reported to the parent
        payload = ("error", traceback.format_exc())
    try:
        with open(result_path, "wb") as f:
            try:
                pickle.dump(payload, f)
            except Exception as e:  # noqa: BLE001
                f.seek(0)
                f.truncate()
                pickle.dump(("error", f"its result could not be sent back ({type(e).__name__}: {e}); "
                                      "return plain data (numbers, lists, dicts, tensors), not a trainer"), f)
    finally:
        os._exit(0)


def _quiet_child(parent: int) -> None:
    """Stop with the kernel, print nowhere (the kernel's output channel belongs to the kernel), one thread."""
    import ctypes

    import torch

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the kernel's main thread ends
    if os.getppid() != parent:
        os._exit(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the child
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):  # handlers hold the kernel's streams
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                try:  # not setStream: it would flush the kernel's stream, which may be closed
                    handler.stream = sys.stderr
                except AttributeError:  # logging.lastResort: its stream is always sys.stderr
                    pass
    os.environ["TQDM_DISABLE"] = "1"  # progress bars (e.g. "Loading weights") would be widgets
    try:  # displays and widgets go straight to the kernel's channel: a copy must not use it
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.display_pub.publish = lambda *args, **kwargs: None
            if getattr(shell, "kernel", None) is not None:
                shell.kernel.session.send = lambda *args, **kwargs: None
    except ImportError:
        pass
    torch.set_num_threads(1)


def _collect(path: Path, status: int, job: tuple) -> Any:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = " (out of memory?)" if sig == signal.SIGKILL else ""
        raise RuntimeError(f"the run {job!r} was killed by signal {sig}{why}.")
    try:
        with open(path, "rb") as f:
            kind, value = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise RuntimeError(f"the run {job!r} ended without a result ({type(e).__name__}).") from None
    if kind == "error":
        raise RuntimeError(f"the run {job!r} failed in its copy of the kernel:\n{value}")
    return value


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
