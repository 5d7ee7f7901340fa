"""Human labels (lab 8): the label file, the panel's logic, the recorded labels, labels to preference rows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from rlhf_helpers import labelling as L


def _pairs(n=6):
    return [L._pair(f"prompt {i}", [f" good {i}", f" bad {i}"], policy="abc", sampling={"seed": 0}) for i in range(n)]


def _store(tmp_path, who="ada", name="labels.jsonl"):
    return L.LabelStore(tmp_path / name, who)


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
    labels, problems, _ = L.read_label_file(tmp_path / "labels.jsonl")
    assert [r["pair_id"] for r in labels] == [pairs[0]["pair_id"]] and not problems
    assert _store(tmp_path).undo()["pair_id"] == pairs[0]["pair_id"]
    assert _store(tmp_path).undo() is None


def test_undoing_a_relabel_brings_back_the_earlier_label(tmp_path):
    """A relabel replaces the pair's label and moves it to the end; its undo lets the earlier label stand
    again (there); an undo of nothing changes nothing. The store's labels always match the file's."""
    store = _store(tmp_path)
    p0, p1 = (p["pair_id"] for p in _pairs(2))

    def standing():
        labels, problems, _ = L.read_label_file(tmp_path / "labels.jsonl")
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
        labels, problems, _ = L.read_label_file(tmp_path / "labels.jsonl")
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
        labels, problems, _ = L.read_label_file(tmp_path / "labels.jsonl")
    assert len(labels) == 2 and len(problems) == 1


def test_a_killed_kernel_loses_nothing_already_chosen(tmp_path):
    """A process that labels, then is killed with SIGKILL: every label it returned from is on disk."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(L.__file__.rsplit('/rlhf_helpers/', 1)[0])!r})
        from rlhf_helpers import labelling as L
        store = L.LabelStore({str(tmp_path / 'labels.jsonl')!r}, "ada")
        for i in range(3):
            store.add(L._pair(f"p{{i}}", [" a", " b"]), 0, "A")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    labels, problems, _ = L.read_label_file(tmp_path / "labels.jsonl")
    assert len(labels) == 3 and not problems


def test_labeller_is_required(tmp_path):
    with pytest.raises(ValueError, match="labeller"):
        L.LabelStore(tmp_path / "l.jsonl", " ")


def test_bad_choice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choice"):
        _store(tmp_path).add(_pairs()[0], 0, "C")


# ----------------------------------------------------------------------------- the panel
def test_panel_records_choices_undoes_and_resumes_where_it_stopped(tmp_path):
    pairs = _pairs()
    panel = L.PairLabeller(pairs, _store(tmp_path))
    assert panel.current is pairs[0]
    for choice in ("A", "B", "tie"):
        panel.choose(choice)
    panel.undo()
    assert panel.current is pairs[2] and panel.labelled() == 2
    panel.choose("skip")
    reopened = L.PairLabeller(pairs, _store(tmp_path))
    assert reopened.current is pairs[3] and reopened.labelled() == 3
    assert reopened.counter_text() == "3 of 6 labelled (0 this session)"
    # another labeller on the same file starts from the beginning
    assert L.PairLabeller(pairs, _store(tmp_path, "bob")).current is pairs[0]


def test_panel_shows_each_pair_in_a_random_order_that_stays_the_same(tmp_path):
    pairs = _pairs(40)
    panel = L.PairLabeller(pairs, _store(tmp_path))
    firsts = [panel.shown_first(p) for p in pairs]
    assert 10 < sum(firsts) < 30
    assert firsts == [L.PairLabeller(pairs, _store(tmp_path)).shown_first(p) for p in pairs]
    row = panel.choose("A")
    assert row["preferred"] == firsts[0]


def test_panel_widget_buttons_and_keys(tmp_path):
    pairs = _pairs(3)
    panel = L.PairLabeller(pairs, _store(tmp_path), question="Which is more positive?")
    box = panel.widget()
    assert L.PANEL_CLASS in box._dom_classes
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
    pairs = L.blind_pairs(["p1", "p2", "p3"], [" same", " r2", " r3"], [" same", " t2", " t3"], task="blind")
    assert len(pairs) == 2 and pairs[0]["sources"] == ["reference", "tuned"]
    panel = L.PairLabeller(pairs, _store(tmp_path))
    panel.widget()
    shown = panel._prompt.value + panel._texts[0].value + panel._texts[1].value
    assert "tuned" not in shown and "reference" not in shown
    with pytest.raises(ValueError, match="as many"):
        L.blind_pairs(["p"], [" a", " b"], [" c"])


# ----------------------------------------------------------------------------- headless fallback
def test_recorded_labels_are_real_judgements_with_a_header(tmp_path):
    labels, problems, header = L.read_label_file(L.RECORDED_LABELS)
    assert not problems and header is not None
    assert "made_by" in header and "how" in header and "classifier" in header["made_by"]
    prefs = [r for r in labels if r["task"] == "preference"]
    blind = [r for r in labels if r["task"] == "blind"]
    assert len(prefs) >= 60 and len(blind) >= 20
    assert all(r["sources"] == ["reference", "tuned"] for r in blind)
    # 80 pairs are labelled one by one: some ties, and both A and B are chosen
    counts = L.choice_counts(prefs)
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
    recorded, _, _ = L.read_label_file(L.RECORDED_LABELS)
    shown = [r for r in recorded if r["task"] == "blind"][:5]
    labels, _ = store.labels_or_recorded(minimum=2, task="blind", pairs=shown)
    assert [r["pair_id"] for r in labels] == [r["pair_id"] for r in shown]
    assert {r["labeller"] for r in labels} == {"kit-recorded"}


# ----------------------------------------------------------------------------- pairs and preference rows
def test_labels_to_preferences_undoes_the_screen_order():
    labels = [dict(L._pair("p", [" x", " y"]), shown_first=s, choice=c, labeller="a")
              for s, c in ((0, "A"), (1, "A"), (0, "B"), (1, "B"), (0, "tie"), (1, "skip"))]
    rows = L.labels_to_preferences(labels)
    assert [r["chosen"] for r in rows] == [" x", " y", " y", " x"]
    assert all(r["rejected"] != r["chosen"] for r in rows)


def test_top_up_fills_to_the_minimum_and_says_the_mix():
    human = [{"prompt": f"h{i}", "chosen": " a", "rejected": " b"} for i in range(3)]
    classifier = [{"prompt": f"c{i}", "chosen": " a", "rejected": " b"} for i in range(10)] + [human[0]]
    rows, mix = L.top_up(human, classifier, minimum=8)
    assert mix == {"human": 3, "classifier": 5} and len(rows) == 8
    assert sum(r["source"] == "human" for r in rows) == 3
    rows, mix = L.top_up(human, classifier, minimum=2)
    assert mix == {"human": 3, "classifier": 0}


def test_model_checksum_changes_with_the_weights():
    model = torch.nn.Linear(3, 2)
    before = L.model_checksum(model)
    assert before == L.model_checksum(model) and len(before) == 16
    with torch.no_grad():
        model.weight[0, 0] += 1e-3
    assert L.model_checksum(model) != before


def test_sample_pairs_records_policy_and_settings_and_is_reproducible():
    from rlhf_helpers.models import load_policy

    policy, tokenizer = load_policy()
    pairs = L.sample_pairs(policy, tokenizer, ["the film was", "i saw this"], max_new_tokens=6, seed=3)
    assert pairs == L.sample_pairs(policy, tokenizer, ["the film was", "i saw this"], max_new_tokens=6, seed=3)
    assert all(p["policy"] == L.model_checksum(policy) and p["sampling"]["max_new_tokens"] == 6 for p in pairs)
    assert all(p["completions"][0] != p["completions"][1] for p in pairs)
