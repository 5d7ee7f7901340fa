"""The box's rules, read from the command line it is started with (no process started: the quick
loop catches a broken rule; tests/grader/test_grading.py proves them on a real kernel, slowly)."""

from __future__ import annotations

import pytest

import autograder.grading.sandbox as S


@pytest.fixture
def command(monkeypatch, tmp_path):
    monkeypatch.setattr(S, "bwrap_path", lambda: "/usr/bin/bwrap")
    monkeypatch.setenv("GRADER_SECRET", "the grader's own environment")
    cfg = S.SandboxConfig(work_dir=str(tmp_path / "work"), ipc_dir=str(tmp_path / "ipc"),
                          hide=["/usr/share"], overlays=[["/srv/box/rlhf_helpers", "/srv/kit/rlhf_helpers"]])
    cmd = S.bwrap_command(cfg, ["python", "-m", "ipykernel_launcher"])
    return cfg, cmd[: cmd.index("--")], cmd[cmd.index("--") + 1:]


def _pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def test_every_namespace_is_the_boxs_own_and_the_kernel_is_nobody_there(command):
    _, args, inner = command
    for flag in ("--unshare-all", "--unshare-user", "--as-pid-1", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in args, flag
    assert "--share-net" not in args
    assert _pairs(args, "--uid") == [str(S.SANDBOX_UID)] != ["0"] and _pairs(args, "--cap-drop") == ["ALL"]
    assert inner == ["python", "-m", "ipykernel_launcher"]


def test_only_the_submissions_scratch_and_sockets_are_writable(command):
    cfg, args, _ = command
    assert _pairs(args, "--bind") == [cfg.work_dir, cfg.ipc_dir]
    assert _pairs(args, "--chdir") == [S.SANDBOX_WORK]
    assert "--dev-bind" not in args and "--bind-try" not in args


def test_the_answer_key_copy_is_mounted_last_and_hidden_folders_are_covered(command):
    _, args, _ = command
    binds = [i for i, a in enumerate(args) if a == "--ro-bind"]
    overlay = next(i for i in binds if args[i + 1] == "/srv/box/rlhf_helpers")
    assert args[overlay + 2] == "/srv/kit/rlhf_helpers" and overlay == binds[-1]
    assert "/usr/share" in _pairs(args, "--tmpfs") and "/usr/share" in _pairs(args, "--remount-ro")


def test_the_kernels_environment_is_the_kits_short_list(command):
    _, args, _ = command
    env = dict(zip(_pairs(args, "--setenv"), [args[i + 2] for i, a in enumerate(args[:-2]) if a == "--setenv"]))
    assert "GRADER_SECRET" not in env and "the grader's own environment" not in args
    assert env["HOME"] == S.SANDBOX_HOME and env["HF_HUB_OFFLINE"] == "1"
