"""Tell a learner why their kernel restarted when it went over their memory limit on the class hub.

When a learner's server goes over its memory limit (hub/jupyterhub_config.py puts each server in
a cgroup of its own), the system ends the process using the most memory, usually the kernel, and
JupyterLab says only that the kernel "appears to have died" and restarts it. The kernels of the
hub's servers load this IPython extension (the kernel spec that
:func:`autograder.classhub.exchange.write_role_config` writes): when a kernel starts, it reads how many
processes its cgroup has lost to the memory limit (cgroup v2's ``memory.events``, v1's
``memory.oom_control``); when that number went up since the previous kernel of this server
started, the first cell the learner runs prints :data:`MESSAGE` before its own output.

The count it saw last is kept in ``~/.local/state/rlhf-course/memory.json`` (the learner's own).
Outside a cgroup with a memory controller it does nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MESSAGE = ("Your kernel was stopped and restarted because your server went over its memory limit{limit}: "
           "the system ends the process using the most memory. Everything the kernel held (variables, "
           "models) is gone. Run the notebook again from the top, and make what used so much memory smaller "
           "(fewer samples, smaller batches, one model at a time).")


def _limit_text() -> str:
    try:
        return f" of {int(os.environ['MEM_LIMIT']) / 2**30:.1f} GiB"
    except (KeyError, ValueError):
        return ""


def oom_kills(proc_cgroup: Path = Path("/proc/self/cgroup"),
              root: Path = Path("/sys/fs/cgroup")) -> tuple[Path, int] | None:
    """(the cgroup folder that holds this process's memory limit, how many processes it has lost to
    that limit), or None when there is none to read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            candidates += [(root / rel, "memory.events"), (root / "unified" / rel, "memory.events")]
        elif "memory" in controllers.split(","):
            candidates.append((root / "memory" / rel, "memory.oom_control"))
    for folder, name in candidates:
        try:
            text = (folder / name).read_text()
        except OSError:
            continue
        for entry in text.splitlines():
            key, _, value = entry.partition(" ")
            if key == "oom_kill":
                return folder, int(value)
    return None


def _state_file() -> Path:
    return Path.home() / ".local" / "state" / "rlhf-course" / "memory.json"


def kills_since_last_start(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup"),
                           state: Path | None = None) -> int:
    """How many processes this server's cgroup lost to its memory limit since the previous kernel
    started (0 the first time, or without a cgroup); records the count for the next kernel."""
    found = oom_kills(proc_cgroup, root)
    if found is None:
        return 0
    folder, kills = found
    try:
        made = folder.stat().st_ctime_ns  # a server started again gets a new cgroup: its count starts at 0
    except OSError:
        made = 0
    state = state or _state_file()
    try:
        seen = json.loads(state.read_text())
        before = seen["kills"] if (seen["cgroup"], seen["made"]) == (str(folder), made) else 0
    except (OSError, ValueError, KeyError, TypeError):
        before = 0
    try:
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"cgroup": str(folder), "made": made, "kills": kills}))
    except OSError:
        pass
    return max(0, kills - before)


def load_ipython_extension(ip) -> None:
    if not kills_since_last_start():
        return

    def tell(*_):
        ip.events.unregister("pre_run_cell", tell)
        print(MESSAGE.format(limit=_limit_text()), file=sys.stderr, flush=True)

    ip.events.register("pre_run_cell", tell)
