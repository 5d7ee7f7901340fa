"""Human feedback: a person labels preference pairs, and judges two models blind.

Everything else in the kit lets the sentiment classifier stand in for people.
This module puts a person in the loop (lab 8):

* :func:`sample_pairs` draws two completions of each prompt from a policy, and
  :func:`blind_pairs` pairs a reference model's completion with a tuned one's;
* :class:`PairLabeller` (an ipywidgets panel; buttons, keys ``a b t s u``)
  shows each pair in a random order and appends every choice at once to a
  JSON Lines file, :class:`LabelStore`. The file is append-only: an undo is a
  line of its own, each line is flushed to disk before the next pair shows, a
  reopened panel resumes after the last label, and a corrupt line (a kernel
  killed mid-write) is reported and skipped, never the lines after it;
* :func:`labels_to_preferences` turns the labels into the ``prompt`` /
  ``chosen`` / ``rejected`` rows that DPO trains on; :func:`cohens_kappa`
  measures agreement with the classifier beyond chance; :func:`wilson_interval`
  gives a win rate its confidence interval (all three graded in lab 8, so
  hidden while it is graded), :func:`bootstrap_interval` one for any statistic;
* :func:`merge_label_files` gathers a class's files: duplicates, conflicting
  labels of one pair, agreement between labellers (Fleiss' kappa), and a
  majority-vote preference set that :func:`write_class_preferences` publishes
  and :func:`load_class_preferences` loads back (``rlhf-course labels merge``).

With nobody at the keyboard (grading, CI, a headless run) nothing waits for a
click: :meth:`LabelStore.labels_or_recorded` falls back to the labels shipped
with the kit (:data:`RECORDED_LABELS`, whose first line says how they were
made), so every later cell still runs on real judgements.

A label line::

    {"kind": "label", "pair_id": "…", "prompt": "…", "completions": ["…", "…"], "shown_first": 1,
     "choice": "A", "preferred": 1, "labeller": "ada", "time": "2026-12-02T19:40:00+00:00",
     "policy": "3f2a…", "sampling": {"temperature": 1.0, …}, "sources": null, "task": "preference"}

``completions`` are in the order they were sampled; ``shown_first`` is the
index of the one shown as A; ``choice`` is what was clicked (``"A"``, ``"B"``,
``"tie"``, ``"skip"``) and ``preferred`` the index it means (``None`` for a tie
or a skip). An undo is ``{"kind": "undo", "pair_id": …, "labeller": …, "time": …}``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import math
import os
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHOICES", "RECORDED_LABELS", "model_checksum", "pair_id", "sample_pairs", "blind_pairs", "LabelStore",
    "read_label_file", "PairLabeller", "labels_to_preferences", "choice_counts", "top_up", "cohens_kappa",
    "bootstrap_interval", "wilson_interval", "pair_scores", "preferred_from_scores", "classifier_preferences",
    "classifier_tally", "judged_wins", "win_rate", "MergeReport",
    "merge_label_files", "write_class_preferences", "load_class_preferences", "fleiss_kappa",
]

CARRIES: dict[str, list[str]] = {}
"""Helpers that do a graded function's work under another name (none here: the graded ones do their own)."""

CHOICES = ("A", "B", "tie", "skip")
KEYS = {"a": "A", "b": "B", "t": "tie", "s": "skip"}
"""Keyboard shortcuts of :class:`PairLabeller` (``u`` undoes the last label)."""

RECORDED_LABELS = Path(__file__).resolve().parent / "recorded_labels.jsonl"
"""Labels shipped with the kit, used when nobody has labelled (its header line says who made them and how)."""

PANEL_CLASS = "rlhf-pair-labeller"
COUNTER_CLASS = "rlhf-label-counter"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def model_checksum(model) -> str:
    """The first 16 hex digits of a SHA-256 over a model's parameters and buffers (names, shapes, values)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().view(-1)
        h.update(f"{name}{tuple(tensor.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def pair_id(prompt: str, completions: Sequence[str]) -> str:
    """A stable id of a pair, the same whichever completion came first (so a class's labels of it match)."""
    a, b = sorted(completions)
    return hashlib.sha256(json.dumps([prompt, a, b]).encode()).hexdigest()[:16]


def _pair(prompt: str, completions: Sequence[str], **extra) -> dict:
    return {"pair_id": pair_id(prompt, completions), "prompt": prompt, "completions": [str(c) for c in completions],
            **extra}


def sample_pairs(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16, temperature: float = 1.0,
                 seed: int = 0, batch_size: int = 64) -> list[dict]:
    """Two completions of each prompt, sampled from ``model`` (pure sampling at ``temperature``).

    Pairs whose two completions are identical are left out (there is nothing to
    choose). Each pair records the model's :func:`model_checksum` and the sampling
    settings, so a label can later be traced to the policy that wrote it. The
    same model, prompts and seed give the same pairs.

    Returns:
        A list of dicts ``{"pair_id", "prompt", "completions": [c0, c1], "policy", "sampling"}``.
    """
    import torch

    if not prompts:
        raise ValueError("sample_pairs needs at least one prompt")
    if temperature <= 0:
        raise ValueError(f"temperature should be > 0, got {temperature}")
    sampling = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0,
                "max_new_tokens": int(max_new_tokens), "seed": int(seed)}
    checksum = model_checksum(model)
    flat = [p for p in prompts for _ in range(2)]
    texts: list[str] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, len(flat), batch_size):
            chunk = flat[start:start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left").to(model.device)
            out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    pairs = []
    for i, prompt in enumerate(prompts):
        c0, c1 = texts[2 * i], texts[2 * i + 1]
        if c0 != c1:
            pairs.append(_pair(prompt, [c0, c1], policy=checksum, sampling=sampling))
    return pairs


def blind_pairs(prompts: Sequence[str], reference_texts: Sequence[str], tuned_texts: Sequence[str],
                names: tuple[str, str] = ("reference", "tuned"), **extra) -> list[dict]:
    """Pairs for a blind comparison: one completion of each prompt from each of two models.

    ``sources`` records which model wrote which completion; :class:`PairLabeller`
    never shows it. Prompts whose two completions are the same text are left out.
    """
    if not (len(prompts) == len(reference_texts) == len(tuned_texts)):
        raise ValueError(f"blind_pairs needs as many texts of each model as prompts: got {len(prompts)} prompts, "
                         f"{len(reference_texts)} and {len(tuned_texts)} texts")
    return [_pair(p, [a, b], sources=list(names), **extra)
            for p, a, b in zip(prompts, reference_texts, tuned_texts) if a != b]


# ----------------------------------------------------------------------------- the label file
def _check_label(row: Any) -> str | None:
    """Why a parsed line is not a usable label or undo (None if it is)."""
    if not isinstance(row, dict):
        return "not a JSON object"
    kind = row.get("kind")
    if kind == "header":
        return None
    if kind == "undo":
        return None if isinstance(row.get("pair_id"), str) else "an undo without a pair_id"
    if kind != "label":
        return f"unknown kind {kind!r}"
    for key in ("pair_id", "prompt", "completions", "shown_first", "choice", "labeller"):
        if key not in row:
            return f"a label without {key!r}"
    comps = row["completions"]
    if not (isinstance(comps, list) and len(comps) == 2 and all(isinstance(c, str) for c in comps)):
        return "completions should be a list of two strings"
    if row["choice"] not in CHOICES:
        return f"choice {row['choice']!r} is not one of {CHOICES}"
    if row["shown_first"] not in (0, 1):
        return f"shown_first should be 0 or 1, got {row['shown_first']!r}"
    return None


def read_label_file(path: str | Path, warn: bool = True) -> tuple[list[dict], list[str], dict | None]:
    """Replay a label file: the labels that stand, the problems met, and the header (if any).

    Undo lines remove the latest label of that pair by that labeller; when one
    labeller labelled a pair twice, the later label stands. A line that is not
    valid JSON, or not a valid label (say a kernel was killed while writing it),
    is reported with its line number and skipped; the lines after it are read.

    Returns:
        ``(labels, problems, header)``: labels in the order they were made.
    """
    standing, problems, header, _ = _replay(Path(path))
    if problems and warn:
        warnings.warn(_skipped(path, problems), stacklevel=2)
    return _on_top(standing), problems, header


def _skipped(path: str | Path, problems: list[str]) -> str:
    return f"{len(problems)} line(s) of {path} skipped:\n  " + "\n  ".join(problems[:10])


_Standing = dict[tuple[str, str], list[dict]]
"""Per (pair_id, labeller), the labels not undone, oldest first; keys in the order their latest label was made."""


def _stand(standing: _Standing, row: dict) -> bool:
    """Apply a label or undo line to ``standing``; True when a label replaced an earlier one of the same key."""
    key = (row["pair_id"], str(row.get("labeller", "")))
    if row["kind"] == "undo":
        if key in standing:
            standing[key].pop()
            if not standing[key]:
                del standing[key]
        return False
    stack = standing.pop(key, [])  # a relabel moves to the end
    standing[key] = stack + [row]
    return bool(stack)


def _on_top(standing: _Standing) -> list[dict]:
    """The labels that stand, in the order they were made."""
    return [stack[-1] for stack in standing.values()]


def _replay(path: Path) -> tuple[_Standing, list[str], dict | None, int]:
    """:func:`read_label_file`'s work, and how many labels were replaced by a later one of the same pair and labeller."""
    standing: _Standing = {}
    if not path.exists():
        return standing, [], None, 0
    relabels = 0
    problems: list[str] = []
    header = None
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path.name} line {number}: not valid JSON ({exc.msg}): {line.strip()[:60]!r}")
                continue
            why = _check_label(row)
            if why:
                problems.append(f"{path.name} line {number}: {why}")
                continue
            if row["kind"] == "header":
                header = header or row
                continue
            if row["kind"] == "label":
                row.setdefault("preferred", _preferred_index(row))
            relabels += _stand(standing, row)
    return standing, problems, header, relabels


def _preferred_index(row: dict) -> int | None:
    if row["choice"] == "A":
        return row["shown_first"]
    if row["choice"] == "B":
        return 1 - row["shown_first"]
    return None


class LabelStore:
    """One person's labels in an append-only JSON Lines file.

    Each :meth:`add` or :meth:`undo` writes one line and forces it to disk
    (``flush`` + ``fsync``) before returning, so a killed kernel or a closed
    browser loses at most the label being made.

    Args:
        path: the file (created with its folder when missing).
        labeller: a name or id of the person labelling, stored with every label.
    """

    def __init__(self, path: str | Path, labeller: str):
        if not isinstance(labeller, str) or not labeller.strip():
            raise ValueError("labeller should be a non-empty name or id, e.g. LabelStore(path, labeller='ada')")
        self.path = Path(path)
        self.labeller = labeller.strip()
        self.problems: list[str] = []
        self.reload()

    def reload(self) -> None:
        """Read the file again (labels of every labeller in it are kept; :meth:`mine` filters)."""
        self._standing, self.problems, self.header, _ = _replay(self.path)
        if self.problems:
            warnings.warn(_skipped(self.path, self.problems))

    def _append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:  # writes go to the end whatever was read
            if f.tell() > 0:  # a line cut short by a killed process must not swallow this one
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def add(self, pair: dict, shown_first: int, choice: str) -> dict:
        """Record ``choice`` (``"A"``, ``"B"``, ``"tie"`` or ``"skip"``) for ``pair`` shown with
        completion ``shown_first`` as A; returns the label written."""
        if choice not in CHOICES:
            raise ValueError(f"choice should be one of {CHOICES}, got {choice!r}")
        if shown_first not in (0, 1):
            raise ValueError(f"shown_first should be 0 or 1, got {shown_first!r}")
        row = {"kind": "label", "pair_id": pair.get("pair_id") or pair_id(pair["prompt"], pair["completions"]),
               "prompt": pair["prompt"], "completions": list(pair["completions"]), "shown_first": int(shown_first),
               "choice": choice, "labeller": self.labeller, "time": _now(), "policy": pair.get("policy"),
               "sampling": pair.get("sampling"), "sources": pair.get("sources"), "task": pair.get("task", "preference")}
        row["preferred"] = _preferred_index(row)
        self._append(row)
        _stand(self._standing, row)
        return row

    def undo(self) -> dict | None:
        """Take back this labeller's latest label (an undo line is appended); returns it, or None."""
        mine = self.mine()
        if not mine:
            return None
        last = mine[-1]
        row = {"kind": "undo", "pair_id": last["pair_id"], "labeller": self.labeller, "time": _now()}
        self._append(row)
        _stand(self._standing, row)  # as a replay of the file would: an earlier label of the pair may stand again
        return last

    def mine(self) -> list[dict]:
        """This labeller's labels, oldest first."""
        return [r for r in _on_top(self._standing) if r["labeller"] == self.labeller]

    def labelled_ids(self) -> set[str]:
        return {r["pair_id"] for r in self.mine()}

    def labels_or_recorded(self, minimum: int = 20, recorded: str | Path = RECORDED_LABELS,
                           task: str = "preference", pairs: Iterable[dict] | None = None) -> tuple[list[dict], str]:
        """This labeller's labels of ``task``, or, when there are fewer than ``minimum``, the recorded ones.

        With ``pairs`` (say, the pairs a blind panel shows: what the current model wrote), only labels of
        those pairs count, mine and recorded alike: judgements of an earlier model's texts are left out.
        The labels say who made them (``labeller``): the recorded ones are not this labeller's.

        Returns:
            ``(labels, source)`` where ``source`` says in words whose labels they are.
        """
        wanted = None if pairs is None else {p["pair_id"] for p in pairs}

        def keep(rows: Iterable[dict]) -> list[dict]:
            return [r for r in rows if r.get("task", "preference") == task and (wanted is None or r["pair_id"] in wanted)]

        mine = keep(self.mine())
        if len(mine) >= minimum:
            return mine, f"your {len(mine)} labels ({self.path.name})"
        labels, _, header = read_label_file(recorded)
        labels = keep(labels)
        who = (header or {}).get("made_by", "see the file's first line")
        return labels, (f"the {len(labels)} labels recorded with the kit ({who}); you have made {len(mine)}, "
                        f"fewer than {minimum}")


# ----------------------------------------------------------------------------- the panel
def _shown_first(pid: str, labeller: str, seed: int) -> int:
    """Which completion a pair shows as A: random, but the same every time the panel is reopened."""
    return hashlib.sha256(f"{seed}:{labeller}:{pid}".encode()).digest()[0] & 1


class PairLabeller:
    """An ipywidgets panel that shows pairs one at a time and records a choice for each.

    Buttons A / B / Tie / Skip / Undo, or (with the pointer over the panel) the
    keys ``a``, ``b``, ``t``, ``s`` and ``u``. Each choice is written to the
    store before the next pair shows; a panel opened on the same file and
    labeller resumes with the first pair not yet labelled. Which completion is A
    is random per pair (fixed by ``seed``), and ``sources`` are never shown.

    The logic (:meth:`choose`, :meth:`undo`, :attr:`current`) works without a
    browser; :meth:`widget` builds the panel on first use.
    """

    def __init__(self, pairs: Sequence[dict], store: LabelStore, question: str = "Which continuation is better?",
                 seed: int = 0, title: str = "Label preferences"):
        if not pairs:
            raise ValueError("PairLabeller needs at least one pair")
        self.pairs = list(pairs)
        self.store = store
        self.question = question
        self.seed = seed
        self.title = title
        self.session = 0
        self._widget = None
        self.index = self._first_unlabelled()

    def _first_unlabelled(self) -> int:
        done = self.store.labelled_ids()
        return next((i for i, p in enumerate(self.pairs) if p["pair_id"] not in done), len(self.pairs))

    @property
    def current(self) -> dict | None:
        """The pair on show (None when every pair is labelled)."""
        return self.pairs[self.index] if self.index < len(self.pairs) else None

    def shown_first(self, pair: dict) -> int:
        return _shown_first(pair["pair_id"], self.store.labeller, self.seed)

    def labelled(self) -> int:
        ids = {p["pair_id"] for p in self.pairs}
        return sum(1 for r in self.store.mine() if r["pair_id"] in ids)

    def choose(self, choice: str) -> dict | None:
        """Record ``choice`` for the pair on show and move on; returns the label (None when all are done)."""
        pair = self.current
        if pair is None:
            return None
        row = self.store.add(pair, self.shown_first(pair), choice)
        self.session += 1
        self.index = self._first_unlabelled()
        self._refresh(f"saved: {choice}")
        return row

    def undo(self) -> dict | None:
        """Take back the latest label and show that pair again."""
        row = self.store.undo()
        if row is None:
            self._refresh("nothing to undo")
            return None
        self.session = max(0, self.session - 1)
        ids = [p["pair_id"] for p in self.pairs]
        self.index = ids.index(row["pair_id"]) if row["pair_id"] in ids else self._first_unlabelled()
        self._refresh(f"undone: {row['choice']}")
        return row

    def counter_text(self) -> str:
        return f"{self.labelled()} of {len(self.pairs)} labelled ({self.session} this session)"

    # --- the widget
    def widget(self):
        """The panel (an ``ipywidgets.VBox``); display it in a notebook cell."""
        if self._widget is None:
            self._build()
        return self._widget

    def _ipython_display_(self):  # noqa: D401 - a display hook
        from IPython.display import display

        display(self.widget())

    def _build(self) -> None:
        import ipywidgets as W

        self._prompt = W.HTML()
        self._texts = [W.HTML(layout=W.Layout(width="48%", border="1px solid #bbb", padding="6px")) for _ in range(2)]
        for t, name in zip(self._texts, ("A", "B")):
            t.add_class(f"rlhf-completion-{name}")
        buttons = []
        for choice, label in (("A", "A is better"), ("B", "B is better"), ("tie", "Tie"), ("skip", "Skip")):
            b = W.Button(description=label, tooltip=f"key {choice[0].lower()}")
            b.add_class(f"rlhf-choice-{choice}")
            b.on_click(lambda _b, c=choice: self.choose(c))
            buttons.append(b)
        undo = W.Button(description="Undo", tooltip="key u", icon="undo")
        undo.add_class("rlhf-undo")
        undo.on_click(lambda _b: self.undo())
        self._counter = W.HTML()
        self._counter.add_class(COUNTER_CLASS)
        self._status = W.HTML()
        self._status.add_class("rlhf-label-status")
        help_text = W.HTML(f"<small>{html.escape(self.question)} Keys (pointer over the panel): a, b, t (tie), "
                           "s (skip), u (undo). Every choice is saved at once.</small>")
        self._widget = W.VBox([W.HTML(f"<b>{html.escape(self.title)}</b>"), help_text, self._prompt,
                               W.HBox(self._texts, layout=W.Layout(justify_content="space-between")),
                               W.HBox(buttons + [undo]), self._counter, self._status])
        self._widget.add_class(PANEL_CLASS)
        self._buttons = buttons + [undo]
        try:
            from ipyevents import Event

            self._events = Event(source=self._widget, watched_events=["keydown"], prevent_default_action=False)
            self._events.on_dom_event(self._on_key)
        except ImportError:  # the panel still works with buttons
            self._events = None
        self._refresh(f"labels are saved to {self.store.path}")

    def _on_key(self, event: dict) -> None:
        key = str(event.get("key", "")).lower()
        if key in KEYS:
            self.choose(KEYS[key])
        elif key == "u":
            self.undo()

    def _refresh(self, status: str = "") -> None:
        if self._widget is None:
            return
        pair = self.current
        self._counter.value = f"<b>{html.escape(self.counter_text())}</b>"
        self._status.value = f"<small>{html.escape(status)}</small>"
        for b in self._buttons[:4]:
            b.disabled = pair is None
        if pair is None:
            self._prompt.value = "<i>Every pair is labelled. Thank you! Run the cells below.</i>"
            for t in self._texts:
                t.value = ""
            return
        first = self.shown_first(pair)
        self._prompt.value = f"<b>Prompt:</b> {html.escape(pair['prompt'])}"
        for t, name, idx in zip(self._texts, ("A", "B"), (first, 1 - first)):
            t.value = f"<b>{name}</b>: …{html.escape(pair['completions'][idx])}"


# ----------------------------------------------------------------------------- from labels to data and statistics
def choice_counts(labels: Iterable[dict]) -> Counter:
    """How many labels of each choice (``A``, ``B``, ``tie``, ``skip``)."""
    return Counter(r["choice"] for r in labels)


def labels_to_preferences(labels: Sequence[dict]) -> list[dict]:
    """``{"prompt", "chosen", "rejected"}`` rows from labels, ties and skips left out (the kit's answer to lab 8)."""
    rows = []
    for r in labels:
        if r["choice"] not in ("A", "B"):
            continue
        win = r["shown_first"] if r["choice"] == "A" else 1 - r["shown_first"]
        rows.append({"prompt": r["prompt"], "chosen": r["completions"][win], "rejected": r["completions"][1 - win]})
    return rows


def top_up(human: Sequence[dict], classifier: Sequence[dict], minimum: int, seed: int = 0) -> tuple[list[dict], dict]:
    """The human preference rows, topped up with classifier-labelled rows to ``minimum`` (when short).

    Classifier rows for a prompt+pair a human labelled are not added twice.
    Returns ``(rows, mix)`` with ``mix = {"human": h, "classifier": c}``; rows are shuffled with ``seed``.
    """
    rows = [dict(r, source="human") for r in human]
    seen = {pair_id(r["prompt"], [r["chosen"], r["rejected"]]) for r in human}
    extra = [r for r in classifier if pair_id(r["prompt"], [r["chosen"], r["rejected"]]) not in seen]
    need = max(0, minimum - len(rows))
    rng = random.Random(seed)
    picked = rng.sample(extra, min(need, len(extra)))
    rows += [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "source": "classifier"}
             for r in picked]
    rng.shuffle(rows)
    return rows, {"human": len(human), "classifier": len(picked)}


def cohens_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two raters' labels of the same items (the kit's answer to lab 8)."""
    if len(a) != len(b):
        raise ValueError(f"cohens_kappa needs two label lists of one length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("cohens_kappa needs at least one label")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if expected == 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


def bootstrap_interval(statistic: Callable[..., float], *columns: Sequence, n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of ``statistic(*columns)``, resampling rows (items) with replacement.

    Resamples where the statistic is undefined (NaN, or raises ValueError) are left out.
    """
    import numpy as np

    n = len(columns[0])
    if n == 0 or any(len(c) != n for c in columns):
        raise ValueError("bootstrap_interval needs columns of one non-zero length")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            v = float(statistic(*[[c[i] for i in idx] for c in columns]))
        except ValueError:
            continue
        if not math.isnan(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (the kit's answer to lab 8): ``0 <= low <= p <= high <= 1``.

    At 0 and n successes the formula's end lands on the proportion itself, where rounding can put it a
    hair on the wrong side (21 of 21 gives 0.9999999999999999): the ends are clamped to the proportion.
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes should be in [0, n], got {successes} of {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(max(0.0, centre - half), p)), float(max(min(1.0, centre + half), p))


def pair_scores(reward_pipeline, labels: Sequence[dict], batch_size: int = 64) -> list[tuple[float, float]]:
    """The classifier's P(POSITIVE) of prompt + each completion of every label's pair (in ``completions`` order).

    The classifier reads prompt + completion, as when the world's pairs were ranked.
    """
    from rlhf_helpers.finetune import positive_scores

    texts = [r["prompt"] + c for r in labels for c in r["completions"]]
    scores = positive_scores(reward_pipeline, texts, batch_size=batch_size) if texts else []
    return [(scores[i], scores[i + 1]) for i in range(0, len(scores), 2)]


def preferred_from_scores(scores: Iterable[tuple[float, float]]) -> list[int | None]:
    """For each pair's ``(s0, s1)`` (as :func:`pair_scores` gives them), the index of the higher (None on a tie):
    the classifier's choice, comparable with a label's ``preferred``."""
    return [None if s0 == s1 else int(s1 > s0) for s0, s1 in scores]


def classifier_preferences(reward_pipeline, labels: Sequence[dict]) -> list[int | None]:
    """For each label's pair, the index of the completion the classifier scores higher (None on a tie).

    When the scores are needed too, call :func:`pair_scores` once and :func:`preferred_from_scores` on them.
    """
    return preferred_from_scores(pair_scores(reward_pipeline, labels))


def classifier_tally(reward_pipeline, labels: Sequence[dict], model: str = "tuned") -> dict[str, int]:
    """:func:`judged_wins` with the classifier as the judge, on the same pairs (the person's skips left out).

    ``labels`` may also be pairs nobody has judged yet (:func:`blind_pairs`): the classifier judges them all.
    """
    judged = [r for r in labels if model in (r.get("sources") or []) and r.get("choice") != "skip"]
    relabelled = []
    for r, pref in zip(judged, classifier_preferences(reward_pipeline, judged)):
        choice = "tie" if pref is None else ("A" if pref == r.get("shown_first", 0) else "B")
        relabelled.append(dict(r, choice=choice, preferred=pref, shown_first=r.get("shown_first", 0)))
    return judged_wins(relabelled, model)


def win_rate(tally: dict[str, int]) -> tuple[float, int]:
    """``(wins + ties / 2) / n`` and ``n = wins + losses + ties`` of a :func:`judged_wins` tally (NaN when n is 0)."""
    n = tally["wins"] + tally["losses"] + tally["ties"]
    return ((tally["wins"] + tally["ties"] / 2) / n if n else float("nan")), n


def judged_wins(labels: Sequence[dict], model: str = "tuned") -> dict[str, int]:
    """Wins, losses and ties of ``model`` in blind labels (``sources`` name the model of each completion)."""
    tally = {"wins": 0, "losses": 0, "ties": 0, "skipped": 0}
    for r in labels:
        sources = r.get("sources") or []
        if model not in sources:
            continue
        if r["choice"] == "skip":
            tally["skipped"] += 1
        elif r["choice"] == "tie":
            tally["ties"] += 1
        elif sources[r["preferred"]] == model:
            tally["wins"] += 1
        else:
            tally["losses"] += 1
    return tally


# ----------------------------------------------------------------------------- a class's labels
def fleiss_kappa(items: Sequence[Sequence]) -> float:
    """Fleiss' kappa over items each rated by two or more raters (the counts may differ per item).

    ``items`` holds, per item, the categories its raters chose. Items with fewer
    than two ratings are left out; NaN when no item is left or chance agreement is 1.
    """
    rated = [list(r) for r in items if len(r) >= 2]
    if not rated:
        return float("nan")
    totals: Counter = Counter()
    agreement = []
    for ratings in rated:
        counts = Counter(ratings)
        m = len(ratings)
        totals.update(counts)
        agreement.append((sum(c * c for c in counts.values()) - m) / (m * (m - 1)))
    n_ratings = sum(totals.values())
    p_e = sum((c / n_ratings) ** 2 for c in totals.values())
    p_o = sum(agreement) / len(agreement)
    return float("nan") if p_e == 1.0 else (p_o - p_e) / (1 - p_e)


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
    report = MergeReport(files=len(paths))
    by_pair: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in paths:
        standing, problems, _, relabels = _replay(Path(path))
        report.problems += problems
        report.duplicates += relabels
        for r in _on_top(standing):
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
              "summary": report.summary(), "time": _now()}
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for row in report.rows:
            f.write(json.dumps({"kind": "preference", **row}, ensure_ascii=False) + "\n")
    return path


def load_class_preferences(path: str | Path):
    """A class's merged preferences (:func:`write_class_preferences`) as a ``datasets.Dataset``
    with the columns ``prompt``, ``chosen`` and ``rejected``."""
    import datasets

    rows, problems = [], []
    path = Path(path)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number}: not valid JSON")
            continue
        if row.get("kind") == "header":
            continue
        if not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
            problems.append(f"line {number}: lacks prompt, chosen or rejected")
            continue
        rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
    if problems:
        warnings.warn(f"{len(problems)} line(s) of {path} skipped: " + "; ".join(problems[:10]), stacklevel=2)
    if not rows:
        raise ValueError(f"{path} holds no preference rows")
    return datasets.Dataset.from_list(rows)
