"""The README's two commands: `make lab` serves JupyterLab, `make test` is what CI runs."""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest


def test_readme_starts_with_exactly_two_commands(repo):
    readme = (repo / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make lab", "make test"]
    assert readme.index("```bash") < readme.index("## "), "the commands come first"


def test_ci_runs_the_readme_test_command_and_nothing_else(repo):
    lines = [line.strip() for line in (repo / ".ci" / "run").read_text().splitlines()]
    steps = [line for line in lines if line and not line.startswith("#")]
    assert steps[-1] == "make test"
    assert all(s in ("set -euo pipefail", 'cd "$(dirname "$0")/.."') for s in steps[:-1]), steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_jupyterlab_on_the_labs(repo):
    port = _free_port()
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"PORT={port}", "LAB_ARGS=--no-browser --ServerApp.token=test-token"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "RLHF_COURSE_PROFILE"},
    )
    try:
        deadline, body = time.time() + 90, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=test-token", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(1)
        assert body is not None, "JupyterLab did not answer on its port"
        names = {item["name"] for item in __import__("json").loads(body)["content"]}
        assert names == {p.name for p in (repo / "labs").iterdir() if not p.name.startswith(".")}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=test-token", timeout=5) as r:
            assert r.status == 200 and "JupyterLab" in r.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
