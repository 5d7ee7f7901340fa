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
