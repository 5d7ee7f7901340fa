"""Human labels of preference pairs: sampling the pairs, the label file, the labelling panel (lab 8).

Everything else in the kit lets the sentiment classifier stand in for people.
This module puts a person in the loop:

* :func:`sample_pairs` draws two completions of each prompt from a policy, and
  :func:`blind_pairs` pairs a reference model's completion with a tuned one's;
* :class:`PairLabeller` (an ipywidgets panel; buttons, keys ``a b t s u``)
  shows each pair in a random order and appends every choice at once to a
  JSON Lines file, :class:`LabelStore`. The file is append-only: an undo is a
  line of its own, each line is flushed to disk before the next pair shows, a
  reopened panel resumes after the last label, and a corrupt line (a kernel
  killed mid-write) is reported and skipped, never the lines after it;
* :func:`labels_to_preferences` turns the labels into the ``prompt`` /
  ``chosen`` / ``rejected`` rows that DPO trains on (graded in lab 8, so hidden
  while it is graded), and :func:`top_up` fills them up with the classifier's.

How far the labels agree with the classifier, and what a blind comparison
says, is :mod:`rlhf_helpers.agreement`; a class's files are merged by
:mod:`rlhf_helpers.class_merge`.

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

import hashlib
import html
import json
import os
import random
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlhf_helpers._jsonl import now as _now
from rlhf_helpers._jsonl import read_json_lines, skipped

__all__ = [
    "CHOICES", "RECORDED_LABELS", "model_checksum", "pair_id", "sample_pairs", "blind_pairs", "LabelStore",
    "read_label_file", "replay_label_file", "PairLabeller", "labels_to_preferences", "choice_counts", "top_up",
]

CHOICES = ("A", "B", "tie", "skip")
KEYS = {"a": "A", "b": "B", "t": "tie", "s": "skip"}
"""Keyboard shortcuts of :class:`PairLabeller` (``u`` undoes the last label)."""

RECORDED_LABELS = Path(__file__).resolve().parent / "recorded_labels.jsonl"
"""Labels shipped with the kit, used when nobody has labelled (its header line says who made them and how)."""

PANEL_CLASS = "rlhf-pair-labeller"
COUNTER_CLASS = "rlhf-label-counter"


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
    labels, problems, header, _ = replay_label_file(path)
    if problems and warn:
        warnings.warn(skipped(path, problems), stacklevel=2)
    return labels, problems, header


def replay_label_file(path: str | Path) -> tuple[list[dict], list[str], dict | None, int]:
    """:func:`read_label_file`'s answer, without a warning, and how many labels were replaced by a later
    label of the same pair by the same labeller (a relabel, or one file read twice)."""
    standing, problems, header, relabels = _replay(Path(path))
    return _on_top(standing), problems, header, relabels


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
    """What stands after every line of ``path``, the problems met, the header (if any), and the relabel count."""
    rows, problems = read_json_lines(path, _check_label)
    standing: _Standing = {}
    header = None
    relabels = 0
    for row in rows:
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
            warnings.warn(skipped(self.path, self.problems))

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


# ----------------------------------------------------------------------------- from labels to data
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
