"""Rebuilding the tiny world: deterministic, gated, loadable."""

import filecmp
import json

import pytest

from rlhf_helpers.build_world import MathWorldConfig, WorldConfig, build_math_world, build_world


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "MANIFEST.json")


def test_quick_build_is_deterministic_and_loads(tmp_path, monkeypatch):
    a = build_world(tmp_path / "a", seed=5, quick=True)
    build_world(tmp_path / "b", seed=5, quick=True)
    files = _files(tmp_path / "a")
    assert {str(f) for f in files} >= {"policy/model.safetensors", "reward/model.safetensors",
                                       "data/reviews_train.jsonl.gz", "data/preferences_test.jsonl.gz"}
    for f in files:
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False), f"{f} differs between builds"
    assert set(a["seconds"]) == {"reviews", "tokenizer", "policy", "reward", "preferences"}

    monkeypatch.setenv("RLHF_COURSE_WORLD", str(tmp_path / "a"))
    from rlhf_helpers.data import load_reviews
    from rlhf_helpers.models import load_policy, load_reward_pipeline

    model, tokenizer = load_policy()
    assert model.config.n_embd == WorldConfig.quick().policy_dim
    assert load_reward_pipeline()("fine", top_k=None)[0]["label"] in {"POSITIVE", "NEGATIVE"}
    assert len(load_reviews("test")) == WorldConfig.quick().n_test_reviews


def test_failed_gates_leave_the_world_untouched(tmp_path, capsys):
    out = tmp_path / "world"
    report = build_world(out, quick=False, config=WorldConfig.quick())  # too small to pass
    assert not report["gates_passed"] and not out.exists()
    assert (tmp_path / "world.building" / "MANIFEST.json").is_file()
    assert "[FAIL]" in capsys.readouterr().out


def test_quick_math_part_is_deterministic_loads_and_survives_a_reviews_build(tmp_path, monkeypatch):
    a = build_math_world(tmp_path / "a", seed=5, quick=True)
    build_math_world(tmp_path / "b", seed=5, quick=True)
    math_a = tmp_path / "a" / "math"
    files = _files(math_a)
    assert {str(f) for f in files} == {"README.md", "policy/config.json", "policy/generation_config.json",
                                       "policy/model.safetensors", "policy/tokenizer.json",
                                       "policy/tokenizer_config.json", "data/math_sft.jsonl.gz",
                                       "data/math_train.jsonl.gz", "data/math_test.jsonl.gz"}
    for f in files:
        assert filecmp.cmp(math_a / f, tmp_path / "b" / "math" / f, shallow=False), f"{f} differs between builds"
    assert set(a["files"]) == {str(f) for f in files} and set(a["seconds"]) == {"problems", "policy", "quality"}
    assert not (tmp_path / "a" / "MANIFEST.json").exists()  # the part has its own manifest, in math/

    before = {str(f): (math_a / f).read_bytes() for f in files}
    build_world(tmp_path / "a", seed=5, quick=True)  # the reviews, built after: math/ stays as it was
    assert {str(f): (math_a / f).read_bytes() for f in _files(math_a)} == before
    assert not any(rel.startswith("math/") for rel in json.loads((tmp_path / "a" / "MANIFEST.json").read_text())["files"])

    monkeypatch.setenv("RLHF_COURSE_WORLD", str(tmp_path / "a"))
    from rlhf_helpers.data import load_math_problems
    from rlhf_helpers.models import load_math_policy

    model, tokenizer = load_math_policy()
    assert model.config.n_embd == MathWorldConfig.quick().dim
    assert tokenizer.tokenize("47+38=") == list("47+38=")
    assert len(load_math_problems("test")) == MathWorldConfig.quick().n_test


def test_shipped_math_part_matches_its_manifest_and_gates(world_dir):
    from rlhf_helpers.data import load_math_problems
    from rlhf_helpers.models import load_math_policy

    manifest = json.loads((world_dir / "math" / "MANIFEST.json").read_text())
    assert manifest["gates_passed"] and not manifest["quick"]
    model, _ = load_math_policy("tiny", device="cpu")  # verifies the checksums of math/policy
    assert sum(p.numel() for p in model.parameters()) == manifest["policy"]["parameters"]
    assert {s: len(load_math_problems(s, "tiny")) for s in ("sft", "train", "test")} == manifest["problems"]


@pytest.mark.slow
def test_full_rebuild_passes_the_gates_and_matches_the_shipped_world(tmp_path, world_dir):
    report = build_world(tmp_path / "world", seed=0)
    assert report["gates_passed"], report["gates"]
    shipped = json.loads((world_dir / "MANIFEST.json").read_text())
    # The corpus and tokenizer are exact; trained weights may differ in the last bits across CPUs.
    for rel in ["data/reviews_train.jsonl.gz", "data/reviews_test.jsonl.gz", "policy/tokenizer.json"]:
        assert report["files"][rel]["sha256"] == shipped["files"][rel]["sha256"], rel
    assert abs(report["reward"]["accuracy"] - shipped["reward"]["accuracy"]) < 0.02
    assert abs(report["policy"]["perplexity"] - shipped["policy"]["perplexity"]) < 0.3
