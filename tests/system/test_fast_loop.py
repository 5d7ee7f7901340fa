"""The quick loop stays quick: a test that starts a kernel, a sandbox, a grader or a browser must be
marked ``slow`` (tests/conftest.py refuses the process otherwise, and says so)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import heavy


@pytest.mark.parametrize("args", [
    ["bwrap", "--ro-bind", "/", "/", "true"],
    [sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"],
    [sys.executable, "-m", "autograder.grading.worker"],
    [sys.executable, "-m", "autograder.cli", "grade", "subs", "--out", "out"],
    [".venv/bin/rlhf-course", "check", "labs/lab1_sampling/lab1_sampling.ipynb"],
    "chromium --headless",
])
def test_heavy_commands_are_recognised(args):
    assert heavy(args)


@pytest.mark.parametrize("args", [
    [sys.executable, "-c", "print(1)"],
    [".venv/bin/rlhf-course", "release", "--check"],
    ["git", "status"],
])
def test_light_commands_are_not(args):
    assert not heavy(args)


def test_a_quick_test_cannot_start_a_sandbox():
    with pytest.raises(RuntimeError, match="mark it @pytest.mark.slow"):
        subprocess.run(["bwrap", "--version"], capture_output=True)


def test_a_quick_test_may_start_a_light_process():
    assert subprocess.run([sys.executable, "-c", "print(2)"], capture_output=True, text=True).stdout == "2\n"
