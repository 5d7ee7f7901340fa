"""Shared pytest set-up: offline by default, GPU tests skipped without a GPU, and every test that
starts a kernel, a sandbox, a grader or a browser marked ``slow`` (else it fails and says so:
``make test-fast`` stays fast)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import _background as background

# Nothing in the tests may reach the Hugging Face Hub.
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


HEAVY = ("bwrap", "ipykernel_launcher", "autograder.grading.sandbox", "autograder.grading.worker", "jupyter-lab",
         "jupyterhub", "chromium", "playwright")
"""Words in a command line that start a kernel, the sandbox, a grading worker, a server or a browser."""
_heavy_allowed = [True]


def heavy(args) -> bool:
    """Whether a command line starts a kernel, a sandbox, a grader or a browser."""
    words = [str(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()
    text = " ".join(words)
    grader = any(w.endswith("rlhf-course") or w == "autograder.cli" for w in words) and bool(
        {"grade", "check", "merge"} & set(words))
    return grader or any(h in text for h in HEAVY)


_popen_init = subprocess.Popen.__init__


def _guarded_popen_init(self, args, *rest, **kwargs):
    if not _heavy_allowed[0] and heavy(args):
        raise RuntimeError(f"this test starts {' '.join(map(str, args))[:120]!r} (a kernel, sandbox, grader or "
                           "browser): mark it @pytest.mark.slow so that make test-fast stays fast")
    return _popen_init(self, args, *rest, **kwargs)


subprocess.Popen.__init__ = _guarded_popen_init


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _heavy_allowed[0] = item.get_closest_marker("slow") is not None
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    _heavy_allowed[0] = True


@pytest.hookimpl(trylast=True)  # after -m and -k have chosen the tests
def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped without a GPU. The long class runs that the chosen tests read start in
    the background now, and the modules that read them go last (tests/_background.py)."""
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    if config.option.collectonly or not items:
        return
    place = {}  # a module goes where its last-placed test goes: a module's tests stay together
    for item in items:
        module = getattr(item, "module", None)
        place[module] = max(place.get(module, 0), background.order(item.fixturenames))
    items.sort(key=lambda item: place[getattr(item, "module", None)])  # stable: pytest's order otherwise
    background.start([name for item in items for name in background.WORK if name in item.fixturenames])


def pytest_sessionfinish(session):
    background.stop()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def world_dir() -> Path:
    from rlhf_helpers.config import PACKAGE_WORLD

    return PACKAGE_WORLD


@pytest.fixture
def world_copy(tmp_path, world_dir, monkeypatch) -> Path:
    """A private copy of the shipped world that a test may damage; the loaders use it."""
    dst = tmp_path / "world"
    shutil.copytree(world_dir, dst)
    monkeypatch.setenv("RLHF_COURSE_WORLD", str(dst))
    monkeypatch.delenv("RLHF_COURSE_PROFILE", raising=False)
    return dst


@pytest.fixture(scope="session")
def policy():
    from rlhf_helpers.models import load_policy

    return load_policy("tiny", device="cpu")


@pytest.fixture(scope="session")
def reward_pipe():
    from rlhf_helpers.models import load_reward_pipeline

    return load_reward_pipeline("tiny", device="cpu")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report as ``item.rep_<phase>`` (the browser test screenshots failures)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_terminal_summary(terminalreporter):
    shots = REPO / "test-artifacts" / "browser"
    if shots.is_dir() and any(shots.iterdir()):
        terminalreporter.write_line(f"browser screenshots: {shots}")
