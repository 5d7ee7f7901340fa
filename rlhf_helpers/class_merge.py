"""A class's labels merged into one preference set (lab 8, ``rlhf-course labels merge``).

:func:`merge_label_files` gathers a class's label files (:mod:`rlhf_helpers.labelling`):
duplicates, conflicting labels of one pair, agreement between labellers
(Fleiss' kappa, :mod:`rlhf_helpers.agreement`), and a majority-vote preference
set that :func:`write_class_preferences` publishes and
:func:`load_class_preferences` loads back for DPO. A bad line in any file (cut
short, not JSON, bytes that are not UTF-8) is reported with its file and line
and skipped; the merge goes on.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_helpers._jsonl import now, read_json_lines, skipped
from rlhf_helpers.labelling import replay_label_file

__all__ = ["MergeReport", "merge_label_files", "write_class_preferences", "load_class_preferences"]

CARRIES = {"merge_label_files": ["labels_to_preferences"]}
"""Helpers that do a graded function's work under another name: the merge turns labels into
preference rows, as lab 8's ``labels_to_preferences`` does (the grading box stubs it with it)."""

COLUMNS = ("prompt", "chosen", "rejected")


@dataclass
class MergeReport:
    """What :func:`merge_label_files` found; ``rows`` are the majority-vote preferences."""

    files: int = 0
    labels: int = 0
    labellers: int = 0
    pairs: int = 0
    duplicates: int = 0
    multiply_labelled: int = 0
    conflicts: int = 0
    agreement: float = float("nan")
    kappa: float = float("nan")
    problems: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.files} file(s), {self.labels} label(s) by {self.labellers} labeller(s) of {self.pairs} pair(s); "
                f"{self.duplicates} duplicate label(s) (same labeller, same pair: the latest kept); "
                f"{self.multiply_labelled} pair(s) labelled by two or more people, {self.conflicts} of them in "
                f"conflict; agreement between labellers {self.agreement:.2f}, Fleiss' kappa {self.kappa:.2f}; "
                f"{len(self.rows)} preference row(s) by majority vote; {len(self.problems)} bad line(s) skipped")


def merge_label_files(paths: Sequence[str | Path], task: str = "preference") -> MergeReport:
    """Merge many people's label files into one majority-vote preference set.

    Per pair (matched by :func:`pair_id`, whatever order each person saw it in)
    every labeller's latest label counts once; a second label of a pair by the
    same labeller (the same file handed in twice, or a relabel) is a duplicate.
    A pair whose labellers did not all make the same choice is a conflict. Skips
    carry no vote. The majority vote (ties of votes, and a "tie" majority, give
    no row) becomes one ``{"prompt", "chosen", "rejected", "votes"}`` row.
    Agreement is the share of agreeing labeller pairs over pairs labelled by two
    or more people, and Fleiss' kappa corrects it for chance.
    """
    # imported here, not at the top: lab 8 only loads the merged file, and its grading box, which follows
    # a module's top-level imports, keeps fleiss_kappa (close to the graded cohens_kappa) hidden
    from rlhf_helpers.agreement import fleiss_kappa

    report = MergeReport(files=len(paths))
    by_pair: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in paths:
        labels, problems, _, relabels = replay_label_file(path)
        report.problems += problems
        report.duplicates += relabels
        for r in labels:
            if r.get("task", "preference") != task:
                continue
            report.duplicates += r["labeller"] in by_pair[r["pair_id"]]
            by_pair[r["pair_id"]][r["labeller"]] = r
    report.labels = sum(len(v) for v in by_pair.values())
    report.labellers = len({who for v in by_pair.values() for who in v})
    report.pairs = len(by_pair)
    ratings, agree, total = [], 0, 0
    for votes in by_pair.values():
        # a vote names the preferred completion by its place in sorted order: the same whatever order each saw
        any_label = next(iter(votes.values()))
        ordered = sorted(any_label["completions"])
        cast = ["tie" if r["preferred"] is None else ordered.index(r["completions"][r["preferred"]])
                for r in votes.values() if r["choice"] != "skip"]
        if len(cast) >= 2:
            report.multiply_labelled += 1
            report.conflicts += len(set(cast)) > 1
            ratings.append(cast)
            for i in range(len(cast)):
                for j in range(i + 1, len(cast)):
                    agree += cast[i] == cast[j]
                    total += 1
        counts = Counter(cast).most_common()
        if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]) or counts[0][0] == "tie":
            continue
        winner = ordered[counts[0][0]]
        report.rows.append({"prompt": any_label["prompt"], "chosen": winner, "rejected": ordered[1 - counts[0][0]],
                            "votes": f"{counts[0][1]} of {len(cast)}"})
    if total:
        report.agreement = agree / total
        report.kappa = fleiss_kappa(ratings)
    return report


def write_class_preferences(report: MergeReport, path: str | Path) -> Path:
    """Write the merged preferences as JSON Lines, the first line a header with the report's summary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": "header", "made_by": f"a class's labels merged by majority vote ({report.labellers} labellers)",
              "summary": report.summary(), "time": now()}
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for row in report.rows:
            f.write(json.dumps({"kind": "preference", **row}, ensure_ascii=False) + "\n")
    return path




def load_class_preferences(path: str | Path):
    """A class's merged preferences (:func:`write_class_preferences`) as a ``datasets.Dataset``
    with the columns ``prompt``, ``chosen`` and ``rejected``; a bad line is skipped with a warning."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such preference file: {path}")
    values, problems = read_json_lines(path, _check_preference)
    rows = [{k: v[k] for k in COLUMNS} for v in values if v.get("kind") != "header"]
    if problems:
        warnings.warn(skipped(path, problems), stacklevel=2)
    if not rows:
        raise ValueError(f"{path} holds no preference rows")
    return datasets.Dataset.from_list(rows)


def _check_preference(row: Any) -> str | None:
    """Why a parsed line of a class's preference file is not a header or a preference row (None if it is)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    if row.get("kind") == "header" or all(isinstance(row.get(k), str) for k in COLUMNS):
        return None
    return "lacks prompt, chosen or rejected"
