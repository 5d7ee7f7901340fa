"""Shared pytest set-up: offline by default, GPU tests skipped without a GPU."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing in the tests may reach the Hugging Face Hub.
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
