"""Profiles: which models and data the kit uses.

``tiny`` (the default) is the offline model world this kit builds and ships in
``rlhf_helpers/world/``; ``hub`` names the real course models on the Hugging
Face Hub. Both are loaded by the same ``from_pretrained`` calls, so switching
is one setting::

    export RLHF_COURSE_PROFILE=hub   # or pass profile="hub" to the loaders

Also the device (:func:`get_device`), the CPU threads the kit's models run with
(:func:`settle_threads` for the whole kernel, :func:`training_threads` for a block), and
how many independent runs train side by side (:func:`side_by_side_workers`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILE_ENV = "RLHF_COURSE_PROFILE"
WORLD_ENV = "RLHF_COURSE_WORLD"
"""Environment variable that points the tiny profile at another world folder
(the tests use it to load a freshly rebuilt world)."""

THREADS_ENV = "RLHF_COURSE_THREADS"
"""Environment variable that sets the CPU threads torch uses for the kit's models, overriding
the tiny world's choice of one (e.g. ``RLHF_COURSE_THREADS=4`` on an idle many-core machine)."""

WORKERS_ENV = "RLHF_COURSE_WORKERS"
"""Environment variable that sets how many independent runs go side by side
(:func:`rlhf_helpers.parallel.run_side_by_side`); the grader sets it to each kernel's share of the cores."""

PACKAGE_WORLD = Path(__file__).resolve().parent / "world"
REBUILD_HINT = "Rebuild it with `rlhf-course build-world` (a few minutes on 2 cores)."


@dataclass(frozen=True)
class Profile:
    """Where a profile's models and data come from."""

    name: str = field(metadata={"help": "profile name: 'tiny' or 'hub'"})
    policy: str = field(metadata={"help": "causal LM (SFT policy): a folder or a Hub repo id"})
    reward: str = field(metadata={"help": "sentiment classifier: a folder or a Hub repo id"})
    reviews: str = field(metadata={"help": "review corpus: a folder or a Hub dataset id"})
    offline: bool = field(metadata={"help": "True when everything is on local disk"})
    description: str = field(default="", metadata={"help": "one line for humans"})
    math_policy: str = field(default="", metadata={"help": "lab 9's causal LM for checked answers: a folder or a Hub repo id"})
    math_problems: str = field(default="", metadata={"help": "lab 9's problems with checkable answers: a folder or a Hub dataset id"})

    @property
    def world_dir(self) -> Path | None:
        """The folder holding the tiny world, or None for the hub profile."""
        return Path(self.policy).parent if self.offline else None


def tiny_world_dir() -> Path:
    """The tiny world's folder: ``$RLHF_COURSE_WORLD`` or the one shipped in the package."""
    return Path(os.environ.get(WORLD_ENV) or PACKAGE_WORLD)


def _tiny() -> Profile:
    root = tiny_world_dir()
    return Profile(
        name="tiny",
        policy=str(root / "policy"),
        reward=str(root / "reward"),
        reviews=str(root / "data"),
        offline=True,
        description="offline tiny world built by this kit (CPU, seconds)",
        math_policy=str(root / "math" / "policy"),
        math_problems=str(root / "math" / "data"),
    )


def _hub() -> Profile:
    return Profile(
        name="hub",
        policy="lvwerra/gpt2-imdb",
        reward="lvwerra/distilbert-imdb",
        reviews="stanfordnlp/imdb",
        offline=False,
        description="the real course models and IMDb (Hub access; a GPU is advised)",
        math_policy="Qwen/Qwen2.5-0.5B-Instruct",
        math_problems="openai/gsm8k",
    )


PROFILES = {"tiny": _tiny, "hub": _hub}


def resolve_profile_name(profile: str | None = None) -> str:
    """The profile to use: the argument, else ``$RLHF_COURSE_PROFILE``, else ``"tiny"``."""
    name = profile if profile is not None else os.environ.get(PROFILE_ENV) or "tiny"
    if not isinstance(name, str):
        raise TypeError(f"profile must be a string such as 'tiny' or 'hub', got {type(name).__name__}")
    name = name.strip().lower()
    if name not in PROFILES:
        source = "argument profile" if profile is not None else f"environment variable {PROFILE_ENV}"
        raise ValueError(
            f"Unknown profile {name!r} (from the {source}). Expected one of "
            f"{sorted(PROFILES)}: 'tiny' is the offline default, 'hub' the real course models."
        )
    return name


def get_profile(profile: str | Profile | None = None) -> Profile:
    """Return the :class:`Profile` named by ``profile`` (see :func:`resolve_profile_name`); a
    :class:`Profile` is returned as it is, so a loader that calls others resolves it once."""
    if isinstance(profile, Profile):
        return profile
    return PROFILES[resolve_profile_name(profile)]()


def get_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"`` when a GPU is present, else ``"cpu"``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


TINY_MODEL_PARAMETERS = 10_000_000
"""Below this many parameters a model counts as tiny for :func:`training_threads`."""


def _threads_for(models: tuple, current: int) -> int:
    """``$RLHF_COURSE_THREADS`` when set; else 1 when every model is a tiny one on the CPU; else ``current``."""
    wanted = os.environ.get(THREADS_ENV, "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"{THREADS_ENV} should be a whole number of threads >= 1, got {wanted!r}")
        return int(wanted)
    sizes = [sum(p.numel() for p in m.parameters()) for m in models]
    on_cpu = all(p.device.type == "cpu" for m in models for p in m.parameters())
    return 1 if sizes and on_cpu and 0 < max(sizes) < TINY_MODEL_PARAMETERS else current


def settle_threads(*models: Any) -> int:
    """Set the kernel's CPU threads for the rest of the notebook to suit ``models``; return the number.

    The loaders (:func:`rlhf_helpers.models.load_policy` and ``load_reward_pipeline``)
    call it, so sampling, scoring and evaluation between the training blocks run with
    the same deliberate choice as the blocks themselves: one thread for the tiny
    world (see :func:`training_threads` for why), torch's own choice for a real course
    model or a GPU, and ``$RLHF_COURSE_THREADS`` whenever it is set.
    """
    import torch

    threads = _threads_for(models, torch.get_num_threads())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def side_by_side_workers() -> int:
    """How many independent runs may train at once, each in its own process on one thread.

    ``$RLHF_COURSE_WORKERS`` when set; else, for the tiny world on a CPU, the cores this
    process may use (:func:`usable_cores`: its CPU affinity, capped by a container's CPU
    limit, so that a JupyterHub pod limited to 2 CPUs on a 64-core node forks 2 copies, not
    64); else 1 (a GPU or a real course model: one run at a time, with torch's threads).
    """
    wanted = os.environ.get(WORKERS_ENV, "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"{WORKERS_ENV} should be a whole number of processes >= 1, got {wanted!r}")
        return int(wanted)
    if get_profile().name != "tiny" or get_device() != "cpu":
        return 1
    return usable_cores()


def usable_cores(cgroup: str | Path = "/sys/fs/cgroup") -> int:
    """The CPU cores this process may use: its affinity, capped by a CPU limit of its cgroup (v2
    ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up; at least 1."""
    import math

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    root = Path(cgroup)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            quota, period = "max", "1"
    if quota not in ("max", "-1") and quota.isdigit() and period.isdigit() and int(period) > 0:
        cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(1, cores)


@contextmanager
def training_threads(*models: Any) -> Iterator[int]:
    """Run a block (training, a sweep, sampling at length) with the CPU threads that suit ``models``.

    A tiny model's matrix products are too small to split between CPU threads: one
    thread is as fast, and when the machine is busy with anything else several
    threads spend their time waiting for each other (lab 3 took 2 min 44 s instead of
    23 s, and lab 6 almost 6 min instead of 1, on a 2-core laptop at load 4-5). So when
    every model is on the CPU and smaller than :data:`TINY_MODEL_PARAMETERS`, the
    block runs on one thread; otherwise (a real course model, a GPU) torch's setting
    stays; ``$RLHF_COURSE_THREADS``, when set, wins. The previous setting is restored
    even when the block raises.

    Args:
        *models: the models the block trains or runs (a value-head wrapper counts its
            ``pretrained_model`` and head).

    Yields:
        The number of threads the block runs with.
    """
    import torch

    before = torch.get_num_threads()
    threads = _threads_for(models, before)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
