"""A kit module as the grading box holds it while a lab is graded (the lab's answers stubbed),
loaded in this process: what tests/grader/test_answer_key_stubs.py checks for every lab and module,
and what the helpers' tests use to show their module still works there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import nbformat

import rlhf_helpers
from autograder.grading.answer_key import learner_names, stub_module
from autograder.labs import source_notebook

REPO = Path(__file__).resolve().parents[1]
KIT = Path(rlhf_helpers.__file__).parent


def graded_names(lab: str) -> set[str]:
    return set(learner_names(nbformat.read(source_notebook(REPO / "solutions", lab), as_version=4)))


def boxed(lab: str, module: str, tmp_path: Path, monkeypatch) -> tuple[ModuleType, list[str], str]:
    """(the boxed module, the names stubbed, its source) for ``rlhf_helpers.<module>`` in ``lab``'s box."""
    path = KIT / f"{module}.py"
    text, replaced = stub_module(path.read_text(encoding="utf-8"), graded_names(lab), lab, f"rlhf_helpers.{module}")
    copy = tmp_path / f"boxed_{module}.py"
    copy.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"boxed_{module}", copy)
    loaded = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, loaded)  # dataclasses look their module up there
    spec.loader.exec_module(loaded)
    return loaded, replaced, text
