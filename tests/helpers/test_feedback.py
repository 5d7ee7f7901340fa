"""Human feedback (lab 8): the label file, the panel's logic, the statistics, a class's merge, the recorded labels."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from rlhf_helpers import feedback as F
from rlhf_helpers.finetune import FakeSentimentPipeline


def _pairs(n=6):
    return [F._pair(f"prompt {i}", [f" good {i}", f" bad {i}"], policy="abc", sampling={"seed": 0}) for i in range(n)]


def _store(tmp_path, who="ada", name="labels.jsonl"):
    return F.LabelStore(tmp_path / name, who)


# ----------------------------------------------------------------------------- the file
def test_each_label_is_one_complete_line_on_disk_with_what_is_needed_to_trust_it(tmp_path):
    store = _store(tmp_path)
    row = store.add(_pairs()[0], shown_first=1, choice="A")
    lines = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == row
    for key in ("prompt", "completions", "shown_first", "choice", "labeller", "time", "policy", "sampling", "pair_id"):
        assert key in row, key
    assert row["preferred"] == 1 and row["labeller"] == "ada" and row["policy"] == "abc"


def test_undo_is_appended_and_replayed(tmp_path):
    store = _store(tmp_path)
    pairs = _pairs()
    store.add(pairs[0], 0, "A")
    store.add(pairs[1], 0, "B")
    undone = store.undo()
    assert undone["pair_id"] == pairs[1]["pair_id"]
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert kinds == ["label", "label", "undo"]
    labels, problems, _ = F.read_label_file(tmp_path / "labels.jsonl")
    assert [r["pair_id"] for r in labels] == [pairs[0]["pair_id"]] and not problems
    assert _store(tmp_path).undo()["pair_id"] == pairs[0]["pair_id"]
    assert _store(tmp_path).undo() is None


def test_undoing_a_relabel_brings_back_the_earlier_label(tmp_path):
    """A relabel replaces the pair's label and moves it to the end; its undo lets the earlier label stand
    again (there); an undo of nothing changes nothing. The store's labels always match the file's."""
    store = _store(tmp_path)
    p0, p1 = (p["pair_id"] for p in _pairs(2))

    def standing():
        labels, problems, _ = F.read_label_file(tmp_path / "labels.jsonl")
        assert not problems
        assert [(r["pair_id"], r["choice"]) for r in store.mine()] == [(r["pair_id"], r["choice"]) for r in labels]
        return [(r["pair_id"], r["choice"]) for r in labels]

    store.add(_pairs()[0], 0, "A")
    store.add(_pairs()[1], 0, "A")
    store.add(_pairs()[0], 0, "B")
    assert standing() == [(p1, "A"), (p0, "B")]
    with (tmp_path / "labels.jsonl").open("a") as f:  # an undo of a pair ada never labelled
        f.write(json.dumps({"kind": "undo", "pair_id": "never", "labeller": "ada"}) + "\n")
    assert standing() == [(p1, "A"), (p0, "B")]
    assert store.undo()["choice"] == "B" and standing() == [(p1, "A"), (p0, "A")]
    assert store.undo()["pair_id"] == p0 and standing() == [(p1, "A")]
    assert store.undo()["pair_id"] == p1 and standing() == []
    assert store.undo() is None and standing() == []


def test_a_corrupt_line_is_reported_and_skipped_and_the_rest_kept(tmp_path):
    store = _store(tmp_path)
    pairs = _pairs()
    store.add(pairs[0], 0, "A")
    with (tmp_path / "labels.jsonl").open("a") as f:
        f.write('{"kind": "label", "pair_id": "x", "prom\n')  # a line cut short
        f.write('{"kind": "label", "pair_id": "y"}\n')        # valid JSON, not a label
    store.add(pairs[1], 1, "tie")
    with pytest.warns(UserWarning, match="2 line"):
        labels, problems, _ = F.read_label_file(tmp_path / "labels.jsonl")
    assert [r["pair_id"] for r in labels] == [pairs[0]["pair_id"], pairs[1]["pair_id"]]
    assert "line 2" in problems[0] and "not valid JSON" in problems[0] and "line 3" in problems[1]
    with pytest.warns(UserWarning, match="2 line"):  # a store opened on the file says so once
        reopened = _store(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an undo does not read the file again, nor warn again
        assert reopened.undo()["pair_id"] == pairs[1]["pair_id"]
    assert [r["pair_id"] for r in reopened.mine()] == [pairs[0]["pair_id"]] and len(reopened.problems) == 2


def test_a_write_cut_short_by_a_killed_process_does_not_swallow_the_next_label(tmp_path):
    store = _store(tmp_path)
    pairs = _pairs()
    store.add(pairs[0], 0, "A")
    with (tmp_path / "labels.jsonl").open("a") as f:
        f.write('{"kind": "label", "pair_i')  # no newline: the process died mid-line
    store.add(pairs[1], 0, "B")
    with pytest.warns(UserWarning):
        labels, problems, _ = F.read_label_file(tmp_path / "labels.jsonl")
    assert len(labels) == 2 and len(problems) == 1


def test_a_killed_kernel_loses_nothing_already_chosen(tmp_path):
    """A process that labels, then is killed with SIGKILL: every label it returned from is on disk."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(F.__file__.rsplit('/rlhf_helpers/', 1)[0])!r})
        from rlhf_helpers import feedback as F
        store = F.LabelStore({str(tmp_path / 'labels.jsonl')!r}, "ada")
        for i in range(3):
            store.add(F._pair(f"p{{i}}", [" a", " b"]), 0, "A")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    labels, problems, _ = F.read_label_file(tmp_path / "labels.jsonl")
    assert len(labels) == 3 and not problems


def test_labeller_is_required(tmp_path):
    with pytest.raises(ValueError, match="labeller"):
        F.LabelStore(tmp_path / "l.jsonl", " ")


def test_bad_choice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choice"):
        _store(tmp_path).add(_pairs()[0], 0, "C")


# ----------------------------------------------------------------------------- the panel
def test_panel_records_choices_undoes_and_resumes_where_it_stopped(tmp_path):
    pairs = _pairs()
    panel = F.PairLabeller(pairs, _store(tmp_path))
    assert panel.current is pairs[0]
    for choice in ("A", "B", "tie"):
        panel.choose(choice)
    panel.undo()
    assert panel.current is pairs[2] and panel.labelled() == 2
    panel.choose("skip")
    reopened = F.PairLabeller(pairs, _store(tmp_path))
    assert reopened.current is pairs[3] and reopened.labelled() == 3
    assert reopened.counter_text() == "3 of 6 labelled (0 this session)"
    # another labeller on the same file starts from the beginning
    assert F.PairLabeller(pairs, _store(tmp_path, "bob")).current is pairs[0]


def test_panel_shows_each_pair_in_a_random_order_that_stays_the_same(tmp_path):
    pairs = _pairs(40)
    panel = F.PairLabeller(pairs, _store(tmp_path))
    firsts = [panel.shown_first(p) for p in pairs]
    assert 10 < sum(firsts) < 30
    assert firsts == [F.PairLabeller(pairs, _store(tmp_path)).shown_first(p) for p in pairs]
    row = panel.choose("A")
    assert row["preferred"] == firsts[0]


def test_panel_widget_buttons_and_keys(tmp_path):
    pairs = _pairs(3)
    panel = F.PairLabeller(pairs, _store(tmp_path), question="Which is more positive?")
    box = panel.widget()
    assert F.PANEL_CLASS in box._dom_classes
    assert "0 of 3 labelled" in panel._counter.value
    text_a = panel._texts[0].value
    assert "prompt 0" in panel._prompt.value and ("good 0" in text_a or "bad 0" in text_a)
    panel._buttons[1].click()                  # "B is better"
    panel._on_key({"key": "T"})                # a tie by keyboard
    assert [r["choice"] for r in panel.store.mine()] == ["B", "tie"]
    panel._on_key({"key": "u"})
    assert [r["choice"] for r in panel.store.mine()] == ["B"] and "undone" in panel._status.value
    panel._on_key({"key": "x"})                # other keys do nothing
    panel.choose("A"); panel.choose("A")
    assert panel.current is None and all(b.disabled for b in panel._buttons[:4])
    assert "Every pair is labelled" in panel._prompt.value


def test_blind_pairs_never_show_the_model(tmp_path):
    pairs = F.blind_pairs(["p1", "p2", "p3"], [" same", " r2", " r3"], [" same", " t2", " t3"], task="blind")
    assert len(pairs) == 2 and pairs[0]["sources"] == ["reference", "tuned"]
    panel = F.PairLabeller(pairs, _store(tmp_path))
    panel.widget()
    shown = panel._prompt.value + panel._texts[0].value + panel._texts[1].value
    assert "tuned" not in shown and "reference" not in shown
    with pytest.raises(ValueError, match="as many"):
        F.blind_pairs(["p"], [" a", " b"], [" c"])


# ----------------------------------------------------------------------------- headless fallback
def test_recorded_labels_are_real_judgements_with_a_header(tmp_path):
    labels, problems, header = F.read_label_file(F.RECORDED_LABELS)
    assert not problems and header is not None
    assert "made_by" in header and "how" in header and "classifier" in header["made_by"]
    prefs = [r for r in labels if r["task"] == "preference"]
    blind = [r for r in labels if r["task"] == "blind"]
    assert len(prefs) >= 60 and len(blind) >= 20
    assert all(r["sources"] == ["reference", "tuned"] for r in blind)
    # 80 pairs are labelled one by one: some ties, and both A and B are chosen
    counts = F.choice_counts(prefs)
    assert counts["A"] > 10 and counts["B"] > 10 and counts["tie"] > 0


def test_labels_or_recorded_falls_back_until_enough_are_made(tmp_path):
    store = _store(tmp_path)
    labels, source = store.labels_or_recorded(minimum=2)
    assert len(labels) >= 60 and "recorded" in source and "you have made 0" in source
    for pair in _pairs(2):
        store.add(pair, 0, "A")
    labels, source = store.labels_or_recorded(minimum=2)
    assert len(labels) == 2 and source.startswith("your 2 labels")
    blind, source = store.labels_or_recorded(minimum=2, task="blind")
    assert all(r["task"] == "blind" for r in blind) and "recorded" in source


def test_labels_or_recorded_keeps_only_the_pairs_asked_for(tmp_path):
    """Judgements of an earlier model's texts are left out, the learner's and the recorded ones alike."""
    store = _store(tmp_path)
    old, new = _pairs(4)[:2], _pairs(4)[2:]
    for pair in old + new[:1]:
        store.add(pair, 0, "A")
    labels, source = store.labels_or_recorded(minimum=1, pairs=new)
    assert [r["pair_id"] for r in labels] == [new[0]["pair_id"]] and source.startswith("your 1 labels")
    labels, source = store.labels_or_recorded(minimum=2, pairs=new)
    assert labels == [] and "recorded" in source
    recorded, _, _ = F.read_label_file(F.RECORDED_LABELS)
    shown = [r for r in recorded if r["task"] == "blind"][:5]
    labels, _ = store.labels_or_recorded(minimum=2, task="blind", pairs=shown)
    assert [r["pair_id"] for r in labels] == [r["pair_id"] for r in shown]
    assert {r["labeller"] for r in labels} == {"kit-recorded"}


# ----------------------------------------------------------------------------- data and statistics
def test_labels_to_preferences_undoes_the_screen_order():
    labels = [dict(F._pair("p", [" x", " y"]), shown_first=s, choice=c, labeller="a")
              for s, c in ((0, "A"), (1, "A"), (0, "B"), (1, "B"), (0, "tie"), (1, "skip"))]
    rows = F.labels_to_preferences(labels)
    assert [r["chosen"] for r in rows] == [" x", " y", " y", " x"]
    assert all(r["rejected"] != r["chosen"] for r in rows)


def test_top_up_fills_to_the_minimum_and_says_the_mix():
    human = [{"prompt": f"h{i}", "chosen": " a", "rejected": " b"} for i in range(3)]
    classifier = [{"prompt": f"c{i}", "chosen": " a", "rejected": " b"} for i in range(10)] + [human[0]]
    rows, mix = F.top_up(human, classifier, minimum=8)
    assert mix == {"human": 3, "classifier": 5} and len(rows) == 8
    assert sum(r["source"] == "human" for r in rows) == 3
    rows, mix = F.top_up(human, classifier, minimum=2)
    assert mix == {"human": 3, "classifier": 0}


def test_cohens_kappa_and_its_edge_cases():
    assert F.cohens_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert F.cohens_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert math.isnan(F.cohens_kappa([1, 1], [1, 1]))
    with pytest.raises(ValueError):
        F.cohens_kappa([1], [1, 2])
    with pytest.raises(ValueError):
        F.cohens_kappa([], [])


def test_wilson_interval_matches_the_formula_and_stays_in_bounds():
    low, high = F.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4901568, 0.9433191), abs=1e-6)
    low, high = F.wilson_interval(10, 10)
    assert high == 1.0 and 0.6 < low < 0.8
    assert F.wilson_interval(0, 5)[0] == 0.0
    for bad in ((1, 0), (-1, 3), (4, 3)):
        with pytest.raises(ValueError):
            F.wilson_interval(*bad)


def test_wilson_interval_holds_the_proportion_at_0_and_n_successes():
    """21 of 21 once gave a high end of 0.9999999999999999, below the proportion: the lab's error bars failed."""
    assert F.wilson_interval(21, 21)[1] == 1.0 and F.wilson_interval(0, 11)[0] == 0.0
    for n in range(1, 300):
        for successes in (0, n / 2, n):
            low, high = F.wilson_interval(successes, n)
            assert 0.0 <= low <= successes / n <= high <= 1.0, (successes, n, low, high)


def test_bootstrap_interval_brackets_the_statistic():
    a = [i % 2 for i in range(60)]
    b = [x if i % 5 else 1 - x for i, x in enumerate(a)]
    k = F.cohens_kappa(a, b)
    low, high = F.bootstrap_interval(F.cohens_kappa, a, b, n_boot=300)
    assert low < k < high and high - low < 0.6
    assert F.bootstrap_interval(F.cohens_kappa, a, b, n_boot=300) == (low, high)  # seeded


def test_lab8_box_hides_the_graded_functions_and_nothing_else_does_their_work(monkeypatch):
    """In lab 8's grading sandbox the three graded functions are stubs (no private twin does their work
    under another name: CARRIES is empty); the statistics the lab calls itself still work."""
    import inspect
    import types

    from autograder.grading.answer_key import stub_module

    graded = {"labels_to_preferences", "cohens_kappa", "wilson_interval"}
    boxed, replaced = stub_module(inspect.getsource(F), graded, "lab8_human_feedback", "rlhf_helpers.feedback")
    assert set(replaced) == graded | set(F.CARRIES) == graded
    module = types.ModuleType("boxed_feedback")
    module.__file__ = F.__file__  # the recorded labels are found beside it
    monkeypatch.setitem(sys.modules, "boxed_feedback", module)
    exec(compile(boxed, "boxed_feedback", "exec"), module.__dict__)  # noqa: S102 - the kit's own source
    for name in graded:
        with pytest.raises(RuntimeError, match="not available while lab8_human_feedback is graded"):
            getattr(module, name)([], [])
    assert module.fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert module.bootstrap_interval(lambda x: sum(x) / len(x), [0, 1] * 10, n_boot=50)[0] < 0.5


def test_judged_and_classifier_wins_on_the_same_pairs():
    pairs = F.blind_pairs(["p1", "p2", "p3", "p4"], [" bad", " bad", " good", " meh"], [" good", " good!", " bad", " meh!"])
    fake = FakeSentimentPipeline({f"{p}{c}": (0.9 if c.startswith(" good") else 0.1 if c == " bad" else 0.5)
                                  for p, c in ((p["prompt"], c) for p in pairs for c in p["completions"])})
    choices = [("A", 1), ("B", 0), ("A", 0), ("tie", 0)]
    labels = [dict(p, shown_first=s, choice=c, labeller="a", preferred=F._preferred_index({"choice": c, "shown_first": s}))
              for p, (c, s) in zip(pairs, choices)]
    # A with shown_first 1 = tuned wins; B with shown_first 0 = tuned wins; A with shown_first 0 = reference wins
    assert F.judged_wins(labels) == {"wins": 2, "losses": 1, "ties": 1, "skipped": 0}
    assert F.classifier_tally(fake, labels) == {"wins": 2, "losses": 1, "ties": 1, "skipped": 0}
    assert F.win_rate({"wins": 2, "losses": 1, "ties": 1}) == (pytest.approx(0.625), 4)
    # pairs nobody judged: the classifier judges all four (the tuned text wins on p1 and p2, loses on p3, p4 ties)
    assert F.classifier_tally(fake, pairs) == {"wins": 2, "losses": 1, "ties": 1, "skipped": 0}


def test_classifier_preferences_from_scores_computed_once():
    """The lab scores the pairs once (it shows the scores) and turns them into the classifier's choices;
    classifier_preferences gives the same choices in one call."""
    labels = [F._pair("p", [" good", " bad"]), F._pair("q", [" bad", " good"]), F._pair("r", [" meh", " meh!"])]
    fake = FakeSentimentPipeline({"p good": 0.9, "p bad": 0.1, "q bad": 0.2, "q good": 0.8})  # r: 0.5 and 0.5
    scores = F.pair_scores(fake, labels)
    assert scores == [pytest.approx(s) for s in ((0.9, 0.1), (0.2, 0.8), (0.5, 0.5))]
    assert F.preferred_from_scores(scores) == [0, 1, None]  # the index in completions, None on a tie
    assert F.classifier_preferences(fake, labels) == [0, 1, None]
    assert F.preferred_from_scores([]) == []


def test_model_checksum_changes_with_the_weights():
    model = torch.nn.Linear(3, 2)
    before = F.model_checksum(model)
    assert before == F.model_checksum(model) and len(before) == 16
    with torch.no_grad():
        model.weight[0, 0] += 1e-3
    assert F.model_checksum(model) != before


def test_sample_pairs_records_policy_and_settings_and_is_reproducible():
    from rlhf_helpers.models import load_policy

    policy, tokenizer = load_policy()
    pairs = F.sample_pairs(policy, tokenizer, ["the film was", "i saw this"], max_new_tokens=6, seed=3)
    assert pairs == F.sample_pairs(policy, tokenizer, ["the film was", "i saw this"], max_new_tokens=6, seed=3)
    assert all(p["policy"] == F.model_checksum(policy) and p["sampling"]["max_new_tokens"] == 6 for p in pairs)
    assert all(p["completions"][0] != p["completions"][1] for p in pairs)


def test_the_blind_panel_takes_a_ppo_policy():
    """Lab 3's policy (the kit's PPO, one step) gives blind pairs like the DPO model does."""
    from rlhf_helpers.finetune import generate_completions
    from rlhf_helpers.models import frozen_copy, load_policy
    from rlhf_helpers.ppo import PPOConfig, PPOTrainer
    from rlhf_helpers.rewards import LengthSampler

    policy, tokenizer = load_policy()
    trainer = PPOTrainer(PPOConfig(batch_size=8, mini_batch_size=4, ppo_epochs=1, seed=0), policy, tokenizer,
                         ref_model=frozen_copy(policy))
    queries = [tokenizer("the film was", return_tensors="pt").input_ids[0]] * 8
    trainer.train(1, lambda: queries, lambda texts: torch.ones(len(texts)), {"length_sampler": LengthSampler(4, 5),
                  "do_sample": True, "top_k": 0, "top_p": 1.0}, progress=False)
    prompts = ["the film was", "i saw this", "the acting"]
    ppo_texts = generate_completions(trainer.model.pretrained_model, tokenizer, prompts, 8, do_sample=True, seed=2)
    ref_texts = generate_completions(trainer.ref_model, tokenizer, prompts, 8, do_sample=True, seed=1)
    pairs = F.blind_pairs(prompts, ref_texts, ppo_texts, names=("reference", "ppo"), task="blind")
    assert pairs and all(p["sources"] == ["reference", "ppo"] for p in pairs)
    labels = [dict(p, shown_first=0, choice="B", labeller="a", preferred=1) for p in pairs]
    assert F.judged_wins(labels, "ppo")["wins"] == len(pairs)


# ----------------------------------------------------------------------------- a class
def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _label(pair, who, preferred, shown_first=0, choice=None):
    if choice is None:
        choice = "A" if preferred == shown_first else "B"
    return {"kind": "label", **pair, "shown_first": shown_first, "choice": choice, "labeller": who, "time": "t"}


def test_merge_counts_duplicates_conflicts_and_agreement(tmp_path):
    p1, p2, p3 = _pairs(3)
    # ada and bob agree on p1 (seen in different orders), disagree on p2; cy ties p2; only ada labels p3
    _write(tmp_path / "ada.jsonl", [_label(p1, "ada", 0), _label(p2, "ada", 0), _label(p3, "ada", 1)])
    _write(tmp_path / "bob.jsonl", [_label(p1, "bob", 0, shown_first=1), _label(p2, "bob", 1), "not json"])
    _write(tmp_path / "cy.jsonl", [_label(p2, "cy", None, choice="tie")])
    (tmp_path / "bob.jsonl").write_text((tmp_path / "bob.jsonl").read_text().replace('"not json"', "{oops"))
    report = F.merge_label_files([tmp_path / "ada.jsonl", tmp_path / "bob.jsonl", tmp_path / "cy.jsonl",
                                  tmp_path / "ada.jsonl"])  # ada's file handed in twice
    assert report.files == 4 and report.labellers == 3 and report.pairs == 3
    assert report.duplicates == 3 and report.multiply_labelled == 2 and report.conflicts == 1
    assert len(report.problems) == 1 and "bob.jsonl line 3" in report.problems[0]
    # labeller pairs: p1 (ada, bob) agree; p2 (ada, bob), (ada, cy), (bob, cy) all differ -> 1 of 4
    assert report.agreement == pytest.approx(0.25)
    assert -1 <= report.kappa < 0.5
    rows = {r["prompt"]: r for r in report.rows}
    assert set(rows) == {p1["prompt"], p3["prompt"]}  # p2 has no majority
    assert rows[p1["prompt"]]["chosen"] == p1["completions"][0] and rows[p1["prompt"]]["votes"] == "2 of 2"
    assert rows[p3["prompt"]]["chosen"] == p3["completions"][1]
    assert "3 labeller(s)" in report.summary() and "1 of them in conflict" in report.summary()


def test_fleiss_kappa_known_values():
    assert F.fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert F.fleiss_kappa([["a", "b"], ["b", "a"]]) == pytest.approx(-1.0)
    assert math.isnan(F.fleiss_kappa([["a"]]))


def test_merged_preferences_are_published_and_load_as_a_dataset(tmp_path):
    p1, p2 = _pairs(2)
    _write(tmp_path / "a.jsonl", [_label(p1, "a", 1), _label(p2, "a", 0)])
    report = F.merge_label_files([tmp_path / "a.jsonl"])
    out = F.write_class_preferences(report, tmp_path / "class_preferences.jsonl")
    assert json.loads(out.read_text().splitlines()[0])["kind"] == "header"
    ds = F.load_class_preferences(out)
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 2
    assert ds[0]["chosen"] == p1["completions"][1]
    _write(tmp_path / "empty.jsonl", [{"kind": "header"}])
    with pytest.raises(ValueError, match="no preference rows"):
        F.load_class_preferences(tmp_path / "empty.jsonl")


def test_labels_merge_command(tmp_path, capsys):
    from autograder.cli import main

    p1, p2 = _pairs(2)
    _write(tmp_path / "a.jsonl", [_label(p1, "a", 1), _label(p2, "a", 0)])
    _write(tmp_path / "b.jsonl", [_label(p1, "b", 1, shown_first=1)])
    assert main(["labels", "merge", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                 "--out", str(tmp_path / "class.jsonl")]) == 0
    said = capsys.readouterr().out
    assert "2 labeller(s)" in said and "wrote 2 preference rows" in said
    assert len(F.load_class_preferences(tmp_path / "class.jsonl")) == 2
    assert main(["labels", "merge", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no such label file" in capsys.readouterr().err
