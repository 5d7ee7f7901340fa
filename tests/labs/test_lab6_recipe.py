"""Lab 6's tests tell wrong recipes from right ones written differently.

Each case below rewrites one of the solution's graded functions (a text
replacement on the instructor source, checked to apply), defines the lab's
functions from the rewritten cells, and runs the lab's own test cells (hidden
tests included) in local mode, where ``observe`` calls the function and the
same checks the judge runs decide. A wrong recipe (padding on the wrong side,
a misnamed prompt column, a trainer that does not check its columns or drops
the reference, a loss curve against the entry index, a reload from the
original weights, sampling with the model's default top-k, and the four that
issue 28 found passing every test: a config setting left at its default, sampling
that ignores its seed, the trained model returned instead of the reloaded one, a
plot without its legend) must fail at least one of the named test cells; a right
one written differently must pass them all.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import nbformat
import pytest

from autograder.cells import is_test_cell
from autograder.labs import source_notebook

SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"

LAB = "lab6_dpo_hf"

WRONG = {
    "tokenizer pads on the right after loading": (
        "load_dpo_models", 'tokenizer.padding_side = "left"', 'tokenizer.padding_side = "right"',
        ["test_load_dpo_models"]),
    "batched generation pads on the right": (
        "generate_completions", 'padding_side="left"', 'padding_side="right"', ["test_generate_completions"]),
    "batched generation trusts the tokenizer's padding side": (
        "generate_completions", ', padding_side="left")', ")", ["test_generate_completions"]),
    "the prompt column is misnamed": (
        "prepare_datasets", "return pairs.train_test_split(",
        'pairs = pairs.rename_column("prompt", "query")\n    return pairs.train_test_split(', ["test_prepare_datasets"]),
    "the trainer does not check the columns": (
        "build_dpo_trainer", 'if ds is not None and not {"prompt", "chosen", "rejected"} <= set(ds.column_names):',
        "if False:", ["test_build_dpo_trainer_errors"]),
    "the trainer drops the given reference": (
        "build_dpo_trainer", "ref_model=ref_model, args=args", "ref_model=None, args=args", ["test_build_dpo_trainer"]),
    "the trainer gets no tokenizer": (
        "build_dpo_trainer", "processing_class=tokenizer, peft_config=peft_config)",
        "processing_class=None, peft_config=peft_config)", ["test_build_dpo_trainer"]),
    "the loss is plotted against the entry index": (
        "plot_log_history", 'ax.plot([e["step"] for e in entries]', "ax.plot(list(range(len(entries)))",
        ["test_plot_log_history"]),
    "the summary's train_loss is plotted as a loss": (
        "plot_log_history", "entries = [e for e in log_history if key in e]",
        "entries = [dict(e, loss=e.get('loss', e.get('train_loss'))) for e in log_history if key in e or "
        "(key == 'loss' and 'train_loss' in e)]", ["test_plot_log_history"]),
    "the model is reloaded from the original weights": (
        "save_and_reload", "model = AutoModelForCausalLM.from_pretrained(output_dir)",
        "model = AutoModelForCausalLM.from_pretrained(trainer.model.config._name_or_path)", ["test_save_and_reload"]),
    "sampling keeps the model's default top-k": (
        "generate_completions", '{"top_k": 0, "top_p": 1.0, "temperature": 1.0}', '{"temperature": 1.0}',
        ["test_generate_completions_sampling"]),
    # issue 28: four wrong recipes that once passed every test of the lab
    "a config setting is silently left at its default": (
        "make_dpo_config", "    settings.update(overrides)\n",
        "    settings.update({k: v for k, v in overrides.items() if k != 'per_device_train_batch_size'})\n",
        ["test_make_dpo_config"]),
    "sampling ignores its seed": (
        "generate_completions", "        torch.manual_seed(seed)\n", "        torch.manual_seed(3)\n", ["test_generate_completions_sampling"]),
    "the trained model is returned, not the one reloaded": (
        "save_and_reload", "model = AutoModelForCausalLM.from_pretrained(output_dir).to(trainer.model.device).eval()",
        "model = trainer.model.eval()", ["test_save_and_reload"]),
    "the plot has no legend": ("plot_log_history", "    ax.legend()\n", "", ["test_plot_log_history"]),
    "ties dropped before malformed records are refused": (
        "prepare_datasets",
        '    for r in records:  # malformed records fail loudly before anything else\n'
        '        if not {"prefix", "completions", "scores"} <= set(r) or len(r["completions"]) != 2 or len(r["scores"]) != 2:\n'
        '            raise ValueError(f"malformed record {r!r}")\n'
        '    kept = [r for r in records if r["scores"][0] != r["scores"][1]]\n'
        "    raw = datasets.Dataset.from_list(kept)",
        '    raw = datasets.Dataset.from_list(list(records)).filter(lambda r: r["scores"][0] != r["scores"][1])',
        ["test_prepare_datasets_errors"]),
}

RIGHT = {
    "a deep-copied reference, frozen as a module": (
        "load_dpo_models",
        'ref_model = AutoModelForCausalLM.from_pretrained(name_or_path).to(device).eval()\n'
        '    for p in ref_model.parameters():\n        p.requires_grad_(False)',
        "import copy\n    ref_model = copy.deepcopy(model).eval().requires_grad_(False)",
        ["test_load_dpo_models"]),
    "ties dropped with Dataset.filter, after the records are checked": (
        "prepare_datasets",
        'kept = [r for r in records if r["scores"][0] != r["scores"][1]]\n'
        "    raw = datasets.Dataset.from_list(kept)",
        'raw = datasets.Dataset.from_list(list(records)).filter(lambda r: r["scores"][0] != r["scores"][1])',
        ["test_prepare_datasets", "test_prepare_datasets_errors"]),
    "records checked by to_preference_format's own errors before the tie test": (
        "prepare_datasets",
        '    for r in records:  # malformed records fail loudly before anything else\n'
        '        if not {"prefix", "completions", "scores"} <= set(r) or len(r["completions"]) != 2 or len(r["scores"]) != 2:\n'
        '            raise ValueError(f"malformed record {r!r}")\n',
        '    for r in records:  # a tie is the one ValueError that is not a malformed record\n'
        '        if r.get("scores") is None or len(r["scores"]) != 2 or r["scores"][0] != r["scores"][1]:\n'
        '            to_preference_format(r)\n',
        ["test_prepare_datasets", "test_prepare_datasets_errors"]),
    "sampling seeded with transformers.set_seed": (
        "generate_completions", "        torch.manual_seed(seed)\n", "        __import__('transformers').set_seed(seed)\n",
        ["test_generate_completions_sampling"]),
    "the model moved to the trainer's device after loading, the tokenizer padded on the left first": (
        "save_and_reload",
        'model = AutoModelForCausalLM.from_pretrained(output_dir).to(trainer.model.device).eval()',
        'model = AutoModelForCausalLM.from_pretrained(output_dir)\n    model.to(trainer.args.device)\n    model.eval()',
        ["test_save_and_reload"]),
    "columns checked one by one, keyword arguments in another order": (
        "build_dpo_trainer",
        'if ds is not None and not {"prompt", "chosen", "rejected"} <= set(ds.column_names):',
        'if ds is not None and any(c not in ds.column_names for c in ("prompt", "chosen", "rejected")):',
        ["test_build_dpo_trainer", "test_build_dpo_trainer_errors"]),
    "the tokenizer set to pad on the left before a plain call": (
        "generate_completions",
        'enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(model.device)',
        'tokenizer.padding_side = "left"\n    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)',
        ["test_generate_completions", "test_generate_completions_sampling"]),
    "the curve built from (step, value) pairs": (
        "plot_log_history",
        'ax.plot([e["step"] for e in entries], [e[key] for e in entries], label=key)',
        'xs, ys = zip(*[(e["step"], e[key]) for e in entries]) if entries else ((), ())\n'
        "        ax.plot(list(xs), list(ys), label=key)",
        ["test_plot_log_history"]),
    "the tokenizer reloaded through the trainer's class": (
        "save_and_reload", "tokenizer = AutoTokenizer.from_pretrained(output_dir)",
        "tokenizer = type(trainer.processing_class).from_pretrained(output_dir)", ["test_save_and_reload"]),
}


@pytest.fixture(scope="module")
def lab():
    """The source's solution cells (by grade_id), test cells (by grade_id), and a namespace after the setup cell."""
    nb = nbformat.read(source_notebook(SOLUTIONS, LAB), as_version=4)
    solutions = {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    tests = {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells if is_test_cell(c)}
    setup = next(c.source for c in nb.cells if c.cell_type == "code")
    base: dict = {"__name__": "__lab6__"}
    with _quiet():
        exec(compile(setup, "<setup>", "exec"), base)  # noqa: S102 - the lab's own source
    return solutions, tests, base


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _failing(lab, changed: dict[str, str], test_ids: list[str]) -> dict[str, str]:
    """Define the lab's functions (with ``changed`` cells), run ``test_ids``; {test id: why it failed}."""
    solutions, tests, base = lab
    space = dict(base)
    with _quiet():
        for gid, source in solutions.items():
            exec(compile(changed.get(gid, source), f"<{gid}>", "exec"), space)  # noqa: S102
    failed = {}
    for tid in test_ids:
        try:
            with _quiet():
                exec(compile(tests[tid], f"<{tid}>", "exec"), dict(space))  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - any failure of a test cell is a lost point
            failed[tid] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return failed


def _rewrite(lab, gid: str, old: str, new: str) -> dict[str, str]:
    source = lab[0][gid]
    assert source.count(old) == 1, f"the case no longer applies to {gid}: {old!r} not found once in the solution"
    return {gid: source.replace(old, new)}


@pytest.mark.slow
def test_the_solution_passes_the_cells_the_cases_use(lab):
    used = sorted({t for cases in (WRONG, RIGHT) for *_, ids in cases.values() for t in ids})
    assert _failing(lab, {}, used) == {}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_recipe_loses_points(lab, case):
    gid, old, new, test_ids = WRONG[case]
    failed = _failing(lab, _rewrite(lab, gid, old, new), test_ids)
    assert failed, f"{case}: {test_ids} still pass"


@pytest.mark.slow
@pytest.mark.parametrize("case", list(RIGHT))
def test_a_right_recipe_written_differently_keeps_its_points(lab, case):
    gid, old, new, test_ids = RIGHT[case]
    assert _failing(lab, _rewrite(lab, gid, old, new), test_ids) == {}, case
