"""A class's labels (lab 8): the merge, the published preference file, the labels merge command, lab 8's box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_helpers import class_merge as C
from rlhf_helpers import labelling as L


def _pairs(n=6):
    pairs = [(f"prompt {i}", [f" good {i}", f" bad {i}"]) for i in range(n)]
    return [{"pair_id": L.pair_id(p, c), "prompt": p, "completions": c} for p, c in pairs]


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
    report = C.merge_label_files([tmp_path / "ada.jsonl", tmp_path / "bob.jsonl", tmp_path / "cy.jsonl",
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


def test_merged_preferences_are_published_and_load_as_a_dataset(tmp_path):
    p1, p2 = _pairs(2)
    _write(tmp_path / "a.jsonl", [_label(p1, "a", 1), _label(p2, "a", 0)])
    report = C.merge_label_files([tmp_path / "a.jsonl"])
    out = C.write_class_preferences(report, tmp_path / "class_preferences.jsonl")
    assert json.loads(out.read_text().splitlines()[0])["kind"] == "header"
    ds = C.load_class_preferences(out)
    assert ds.column_names == ["prompt", "chosen", "rejected"] and len(ds) == 2
    assert ds[0]["chosen"] == p1["completions"][1]
    _write(tmp_path / "empty.jsonl", [{"kind": "header"}])
    with pytest.raises(ValueError, match="no preference rows"):
        C.load_class_preferences(tmp_path / "empty.jsonl")


def test_labels_merge_command(tmp_path, capsys):
    from autograder.cli import main

    p1, p2 = _pairs(2)
    _write(tmp_path / "a.jsonl", [_label(p1, "a", 1), _label(p2, "a", 0)])
    _write(tmp_path / "b.jsonl", [_label(p1, "b", 1, shown_first=1)])
    assert main(["labels", "merge", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"),
                 "--out", str(tmp_path / "class.jsonl")]) == 0
    said = capsys.readouterr().out
    assert "2 labeller(s)" in said and "wrote 2 preference rows" in said
    assert len(C.load_class_preferences(tmp_path / "class.jsonl")) == 2
    assert main(["labels", "merge", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no such label file" in capsys.readouterr().err


def test_a_line_that_is_not_utf8_costs_the_merge_that_line_only(tmp_path):
    """A class's files come from many machines: bytes that are not UTF-8 neither stop the merge nor the
    loading of its result; the line they break is skipped, named by file and line, and the rest is read."""
    p1, p2 = _pairs(2)
    _write(tmp_path / "ada.jsonl", [_label(p1, "ada", 1), _label(p2, "ada", 0)])
    _write(tmp_path / "bob.jsonl", [_label(p1, "bob", 1)])
    with (tmp_path / "bob.jsonl").open("ab") as f:
        f.write(b'{"kind": "label", "pair_id": \xff\xfe}\n')  # latin-1 debris where a string should be
    _write_more(tmp_path / "bob.jsonl", [_label(p2, "bob", 0)])
    report = C.merge_label_files([tmp_path / "ada.jsonl", tmp_path / "bob.jsonl"])
    assert len(report.problems) == 1 and "bob.jsonl line 2: not valid JSON" in report.problems[0]
    assert report.labels == 4 and report.multiply_labelled == 2 and len(report.rows) == 2
    out = C.write_class_preferences(report, tmp_path / "class_preferences.jsonl")
    with out.open("ab") as f:
        f.write(b"\x93chosen\x94 \xe9t\xe9\n")  # a line that is neither UTF-8 nor JSON
    _write_more(out, [{"prompt": "p", "chosen": " a", "rejected": " b"}, ["not", "a", "row"], {"prompt": "p"}])
    with pytest.warns(UserWarning, match=r"3 line\(s\) of .*class_preferences.jsonl skipped") as caught:
        ds = C.load_class_preferences(out)
    said = str(caught[0].message)
    assert "line 4: not valid JSON" in said and "line 6: not a JSON object" in said and "line 7: lacks prompt" in said
    assert len(ds) == 3 and ds[2]["chosen"] == " a"
    with pytest.raises(FileNotFoundError):
        C.load_class_preferences(tmp_path / "missing.jsonl")


def _write_more(path, rows):
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- lab 8's grading box
GRADED = {"labels_to_preferences", "cohens_kappa", "wilson_interval"}
"""Lab 8's graded functions."""


@pytest.mark.parametrize("module", ["labelling", "agreement", "class_merge"])
def test_lab8_box_keeps_what_the_lab_calls(module, tmp_path, monkeypatch):
    """In lab 8's box (tests/grader/test_answer_key_stubs.py: what is stubbed, the merge with the graded
    functions) what the lab calls itself still works (write_class_preferences does no graded work)."""
    from _box import boxed

    from rlhf_helpers import labelling as real

    loaded, _, _ = boxed("lab8_human_feedback", module, tmp_path, monkeypatch)
    if module == "labelling":
        labels, problems, _ = loaded.read_label_file(real.RECORDED_LABELS)
        assert labels and not problems and loaded.choice_counts(labels)["A"] > 0
    elif module == "agreement":
        assert loaded.fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
        assert loaded.bootstrap_interval(lambda x: sum(x) / len(x), [0, 1] * 10, n_boot=50)[0] < 0.5
    else:
        report = C.MergeReport(labellers=1, rows=[{"prompt": "p", "chosen": " a", "rejected": " b", "votes": "1 of 1"}])
        out = loaded.write_class_preferences(report, tmp_path / "class_preferences.jsonl")
        assert loaded.load_class_preferences(out)[0]["chosen"] == " a"


def test_each_graded_function_is_defined_in_one_module_of_the_kit():
    """A second definition would be a copy of the answer that the box does not know to stub."""
    import ast

    from autograder.cells import definitions

    kit = Path(L.__file__).parent
    homes = {name: [path.stem for path in sorted(kit.glob("*.py"))
                    if name in {d.name for d in definitions(ast.parse(path.read_text(encoding="utf-8")))}]
             for name in GRADED}
    assert homes == {"labels_to_preferences": ["labelling"], "cohens_kappa": ["agreement"], "wilson_interval": ["agreement"]}
