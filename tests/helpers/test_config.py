"""Profiles: tiny by default, hub one setting away, clear errors otherwise."""

import pytest

from rlhf_helpers.config import get_device, get_profile, resolve_profile_name


def test_default_is_tiny(monkeypatch):
    monkeypatch.delenv("RLHF_COURSE_PROFILE", raising=False)
    prof = get_profile()
    assert prof.name == "tiny" and prof.offline


def test_environment_variable_selects_hub(monkeypatch):
    monkeypatch.setenv("RLHF_COURSE_PROFILE", "hub")
    prof = get_profile()
    assert (prof.name, prof.policy, prof.reward, prof.reviews) == (
        "hub", "lvwerra/gpt2-imdb", "lvwerra/distilbert-imdb", "stanfordnlp/imdb")


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("RLHF_COURSE_PROFILE", "hub")
    assert get_profile("tiny").name == "tiny"
    assert resolve_profile_name(" HUB ") == "hub"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown profile 'huge'.*'hub', 'tiny'"):
        get_profile("huge")
    monkeypatch.setenv("RLHF_COURSE_PROFILE", "gpt4")
    with pytest.raises(ValueError, match="RLHF_COURSE_PROFILE"):
        get_profile()
    with pytest.raises(TypeError, match="profile must be a string"):
        get_profile(3)


def test_device_is_chosen_automatically():
    import torch

    assert get_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert get_device("cpu") == "cpu"


def test_cli_info_and_bad_profile(capsys):
    from rlhf_helpers.cli import main

    assert main(["info"]) == 0
    assert "profile: tiny" in capsys.readouterr().out
    assert main(["info", "--profile", "nope"]) == 2
    assert "Unknown profile" in capsys.readouterr().err


def test_training_threads_runs_tiny_cpu_models_on_one_thread_and_restores_the_setting():
    import torch

    from rlhf_helpers.config import TINY_MODEL_PARAMETERS, training_threads

    before = torch.get_num_threads()
    tiny, other = torch.nn.Linear(4, 4), torch.nn.Linear(8, 2)
    with training_threads(tiny, other) as threads:
        assert threads == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), training_threads(tiny):
        raise RuntimeError("a failing block still restores the threads")
    assert torch.get_num_threads() == before
    big = torch.nn.Embedding(TINY_MODEL_PARAMETERS // 4 + 1, 4)  # just over the line: torch's setting stays
    with training_threads(tiny, big) as threads:
        assert threads == before


def test_settle_threads_chooses_one_thread_for_the_tiny_world_unless_told(monkeypatch):
    import torch

    from rlhf_helpers.config import TINY_MODEL_PARAMETERS, settle_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert settle_threads(torch.nn.Linear(4, 4)) == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        assert settle_threads(torch.nn.Embedding(TINY_MODEL_PARAMETERS // 4 + 1, 4)) == 2  # a real model: unchanged
        monkeypatch.setenv("RLHF_COURSE_THREADS", "3")
        assert settle_threads(torch.nn.Linear(4, 4)) == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("RLHF_COURSE_THREADS", "two")
        with pytest.raises(ValueError, match="RLHF_COURSE_THREADS"):
            settle_threads(torch.nn.Linear(4, 4))
    finally:
        torch.set_num_threads(before)


def test_loading_the_tiny_world_settles_the_kernel_on_one_thread():
    """Sampling and scoring between training blocks run as deliberately as the blocks (issue 17)."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(2); from rlhf_helpers.models import load_policy, load_reward_pipeline; "
            "load_policy(); a = torch.get_num_threads(); torch.set_num_threads(2); load_reward_pipeline(); "
            "print(a, torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_info_lists_every_lab_with_its_title(capsys):
    from rlhf_helpers.cli import course_labs, main

    labs = dict(course_labs())
    assert "lab1_sampling" in labs and "lab7_beyond_ppo" in labs
    assert labs["lab7_beyond_ppo"].startswith("Lab 7")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert all(lab_id in out for lab_id in labs)
