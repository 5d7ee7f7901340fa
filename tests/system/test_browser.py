"""The kit in a real browser: JupyterLab started by `make lab`, driven by headless Chromium.

Playwright's Python package drives Debian's Chromium (`/usr/bin/chromium`, installed by
`make test`'s system-deps step) through ``executable_path``; nothing downloads a browser.
JupyterLab serves a scratch copy of ``labs/`` (it autosaves, and the repo's copies
must stay output-free). Screenshots of every state go to ``test-artifacts/browser/``,
named in the test summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "browser-test"
SHOTS = REPO / "test-artifacts" / "browser"
# Flags for a closed network: no background fetches, no first-run, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAB_SETTINGS = {
    # render every cell (JupyterLab 4 windows long notebooks, hiding off-screen cells from the DOM)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """The scratch root that `lab_server` serves: its ``labs/`` is a copy of the repo's, and a
    notebook's kernel writes its files (a lab's labels.jsonl) beside the notebook there."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "labs", root / "labs")
    return root


@pytest.fixture(scope="module")
def lab_server(lab_root):
    """`make lab` on a scratch copy of labs/, on its own port, with a known token."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (apt-get install chromium).")
    root = lab_root
    for rel, value in LAB_SETTINGS.items():
        path = root / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port = _free_port()
    args = (f"--no-browser --ServerApp.token={TOKEN} --LabApp.user_settings_dir={root / 'settings'} "
            f"--LabApp.workspaces_dir={root / 'workspaces'}")
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}", f"LAB_DIR={root / 'labs'}", f"LAB_ARGS={args}"],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "RLHF_COURSE_PROFILE"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (root / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:  # stop the server even when an assertion failed
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shoot(pg, f"{request.node.name}-FAILED")
    context.close()


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path}")
    return path


# The notebook in the tab in front: other notebooks may be open behind it, hidden.
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"


def open_notebook(page, url: str, rel: str) -> None:
    """Open one notebook in a fresh workspace of its own, so that no tab from an
    earlier test is restored behind it."""
    workspace = Path(rel).stem
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/{rel}?reset&token={TOKEN}")
    wait_for_notebook(page)


def wait_for_notebook(page) -> None:
    """Wait until the notebook in front shows its cells and its kernel is idle."""
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell")
    page.wait_for_function(
        "() => document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle'",
        timeout=120_000)


def run_cells_until(page, marker: str) -> None:
    """Run cells one at a time, as a learner pressing Shift+Enter would, up to and
    including the first cell whose source contains ``marker``. Unanswered exercises
    raise in the student copy; running cell by cell carries on past them."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    cells = page.locator(f"{NOTEBOOK} .jp-Cell")
    # JupyterLab draws the cells below the first screen a moment after the notebook opens
    page.wait_for_function(f"m => [...document.querySelectorAll('{NOTEBOOK} .jp-Cell .jp-InputArea-editor')]"
                           ".some(e => e.innerText.includes(m))", arg=marker, timeout=60_000)
    sources = cells.evaluate_all("els => els.map(e => e.querySelector('.jp-InputArea-editor')?.innerText || '')")
    target = next((i for i, s in enumerate(sources) if marker in s), None)
    assert target is not None, f"no cell contains {marker!r}"
    for i in range(target + 1):
        cell = cells.nth(i)
        if "jp-CodeCell" not in (cell.get_attribute("class") or ""):
            cell.locator(".jp-InputArea-prompt").first.click()
            page.keyboard.press("Shift+Enter")
            continue
        prompt = cell.locator(".jp-InputArea-prompt").first.element_handle()
        # On a busy machine JupyterLab can drop the first Shift+Enter after a notebook opens (its prompt
        # stays '[ ]' and the kernel idle): press it again until the cell is queued ('[*]') or has run.
        for attempt in range(3):
            cell.locator(".jp-InputArea-prompt").first.click()
            page.keyboard.press("Shift+Enter")
            try:
                page.wait_for_function("el => /\\[(\\d+|\\*)\\]/.test(el.textContent)", arg=prompt, timeout=20_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        page.wait_for_function("el => /\\[\\d+\\]/.test(el.textContent)", arg=prompt, timeout=180_000)


def set_readout(page, control, value: str) -> None:
    """Type a value into a slider's editable readout (or a text box) and press Enter."""
    box = control.locator(".widget-readout, input").first
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def _image_src(page, selector: str) -> str:
    return page.locator(f"{selector} img, img{selector}").first.get_attribute("src") or ""


def test_generation_explorer_updates_text_and_chart(lab_server, page):
    from rlhf_helpers.widgets import EXPLORER_CHART_CLASS, EXPLORER_CLASS, EXPLORER_TEXT_CLASS

    open_notebook(page, lab_server, "lab1_sampling/lab1_sampling.ipynb")
    run_cells_until(page, "generation_explorer(")
    panel = page.locator(f".{EXPLORER_CLASS}").first
    panel.scroll_into_view_if_needed()
    text, chart = f".{EXPLORER_TEXT_CLASS}", f".{EXPLORER_CHART_CLASS}"
    page.wait_for_function(f"() => document.querySelector('{text}')?.innerText.trim().length > 0")
    text0, chart0 = page.locator(text).inner_text(), _image_src(page, chart)
    assert chart0.startswith("blob:") or chart0.startswith("data:"), "the chart should be an image"
    shoot(page, "lab1-explorer-initial")

    set_readout(page, panel.locator(".rlhf-control-temperature"), "2.5")
    page.wait_for_function(f"src => (document.querySelector('{chart} img, img{chart}')?.src || '') !== src",
                           arg=chart0)
    chart1 = _image_src(page, chart)
    shoot(page, "lab1-explorer-temperature-2.5")

    text1 = page.locator(text).inner_text()
    set_readout(page, panel.locator(".rlhf-control-seed"), "7")
    page.wait_for_function(f"t => document.querySelector('{text}')?.innerText !== t", arg=text1)
    text2 = page.locator(text).inner_text()
    shoot(page, "lab1-explorer-seed-7")
    assert chart1 != chart0, "the probability chart should change with the temperature"
    assert text2 != text1 and text2 != text0, "the generated text should change with the seed"
    assert text2.startswith("the acting was") or len(text2) > 0


def test_validate_button_is_on_a_lab(lab_server, page):
    open_notebook(page, lab_server, "lab2_rewards/lab2_rewards.ipynb"
                  if (REPO / "labs" / "lab2_rewards").exists() else "lab1_sampling/lab1_sampling.ipynb")
    button = page.locator("[title='Validate Assignment']").first
    button.wait_for()
    assert button.is_visible() and "Validate" in button.inner_text()
    shoot(page, "validate-button")


def test_beta_slider_updates_bars(lab_server, page):
    if not (REPO / "labs" / "lab4_kl_beta").exists():
        pytest.fail("labs/lab4_kl_beta is missing: release lab 4 first (rlhf-course release)")
    open_notebook(page, lab_server, "lab4_kl_beta/lab4_kl_beta.ipynb")
    run_cells_until(page, "beta_explorer(")
    panel = page.locator(".rlhf-beta-explorer").first
    panel.scroll_into_view_if_needed()
    page.wait_for_function("() => !!document.querySelector('.rlhf-beta-explorer img')")
    before = page.locator(".rlhf-beta-explorer img").first.get_attribute("src")
    shoot(page, "lab4-beta-initial")
    set_readout(page, panel.locator(".widget-slider").first, "0.05")
    page.wait_for_function("src => document.querySelector('.rlhf-beta-explorer img')?.src !== src", arg=before)
    shoot(page, "lab4-beta-0.05")
    assert page.locator(".rlhf-beta-explorer img").first.get_attribute("src") != before


def test_lab7_trains_a_reward_model_in_jupyterlab(lab_server, page):
    """Lab 7 opens and runs in JupyterLab up to TRL's RewardTrainer and its loss curve."""
    open_notebook(page, lab_server, "lab7_beyond_ppo/lab7_beyond_ppo.ipynb")
    run_cells_until(page, "rm_trainer.train()")
    cell = page.locator(f"{NOTEBOOK} .jp-Cell", has_text="rm_trainer.train()").first
    cell.locator(".jp-OutputArea-output img").first.wait_for()  # the RewardTrainer loss plot
    assert "Error" not in cell.locator(".jp-OutputArea").inner_text()  # the training cell itself ran clean
    shoot(page, "lab7-reward-model")


def _paste_solutions(lab: str, folder: Path) -> None:
    """The learner copy in ``folder`` with the source's answers pasted into its solution cells."""
    import nbformat

    source = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(folder / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        cell.source = answers.get(cell.metadata.get("nbgrader", {}).get("grade_id"), cell.source)
    nbformat.write(nb, folder / f"{lab}.ipynb")


def test_lab9_fine_tunes_to_the_answer_format_in_jupyterlab(lab_server, lab_root, page):
    """Lab 9 opens and runs in JupyterLab up to TRL's SFTTrainer and its loss curve, for a learner who has
    written Part A (SFT needs the learner's to_sft_example and check_completion_only_loss)."""
    lab = "lab9_verifiable_rewards"
    if not (lab_root / "labs" / lab).exists():
        pytest.fail("labs/lab9_verifiable_rewards is missing: release lab 9 first (rlhf-course release)")
    _paste_solutions(lab, lab_root / "labs" / lab)
    open_notebook(page, lab_server, f"{lab}/{lab}.ipynb")
    run_cells_until(page, "sft_trainer.train()")
    cell = page.locator(f"{NOTEBOOK} .jp-Cell", has_text="sft_trainer.train()").first
    cell.locator(".jp-OutputArea-output img").first.wait_for(timeout=120_000)  # the SFT loss plot
    output = cell.locator(".jp-OutputArea").inner_text()
    assert "Error" not in output and "the loss covers each completion" in output
    shoot(page, "lab9-sft")


def test_lab8_labels_pairs_and_resumes_after_a_reload(lab_server, lab_root, page):
    """Lab 8's labelling panel in JupyterLab: five labels by button and by key with an undo between them,
    each in labels.jsonl at once; after a page reload the re-run cell resumes the count (the kernel kept);
    then the blind comparison panel."""
    from playwright.sync_api import expect

    from rlhf_helpers.labelling import COUNTER_CLASS, PANEL_CLASS, read_label_file

    rel = "lab8_human_feedback/lab8_human_feedback.ipynb"
    if not (REPO / "labs" / rel).exists():
        pytest.fail("labs/lab8_human_feedback is missing: release lab 8 first (rlhf-course release)")
    folder = lab_root / "labs" / "lab8_human_feedback"
    labels_file = folder / "labels.jsonl"
    for name in ("labels.jsonl", "judgements.jsonl"):  # a learner's files copied from labs/ would skew the counts
        (folder / name).unlink(missing_ok=True)
    labeller_cell = "labelling.PairLabeller(pairs, store"
    open_notebook(page, lab_server, rel)
    run_cells_until(page, labeller_cell)

    panel = page.locator(f".{PANEL_CLASS}").first
    counter, status = panel.locator(f".{COUNTER_CLASS}"), panel.locator(".rlhf-label-status")
    prompt = panel.locator(".widget-html", has_text="Prompt:")
    wait = {"timeout": 30_000}  # a round trip to a busy kernel; expect's default is 5 s
    expect(counter).to_have_text(re.compile(r"0 of \d+ labelled \(0 this session\)"), **wait)
    total = int(re.search(r"of (\d+)", counter.inner_text()).group(1))
    panel.scroll_into_view_if_needed()
    first_a = panel.locator(".rlhf-completion-A").inner_text()

    def then_shows(done: int, saved: str) -> None:
        expect(counter).to_have_text(f"{done} of {total} labelled ({done} this session)", **wait)
        expect(status).to_have_text(saved, **wait)

    panel.locator(".rlhf-choice-A").click()
    then_shows(1, "saved: A")
    panel.locator(".rlhf-choice-B").click()
    then_shows(2, "saved: B")
    third = prompt.inner_text()
    panel.locator(".rlhf-choice-tie").click()
    then_shows(3, "saved: tie")
    panel.locator(".rlhf-undo").click()
    then_shows(2, "undone: tie")
    expect(prompt).to_have_text(third, **wait)  # the undone pair shows again
    # a key: ipyevents listens while the pointer is over the panel (it starts on the pointer entering it)
    cells = page.locator(f"{NOTEBOOK} .jp-Cell")
    n_cells = cells.count()
    page.mouse.move(0, 0)
    panel.hover(position={"x": 8, "y": 8})  # the title, not a button
    page.keyboard.press("a")
    then_shows(3, "saved: A")
    expect(cells).to_have_count(n_cells)  # the panel kept the key: JupyterLab's `a` (insert a cell above) did not run
    panel.locator(".rlhf-choice-skip").click()
    then_shows(4, "saved: skip")
    panel.locator(".rlhf-choice-B").click()
    then_shows(5, "saved: B")
    shoot(page, "lab8-labeller-5-labelled")

    lines = [json.loads(line) for line in labels_file.read_text(encoding="utf-8").splitlines()]
    assert [(r["kind"], r.get("choice")) for r in lines] == [
        ("label", "A"), ("label", "B"), ("label", "tie"), ("undo", None), ("label", "A"), ("label", "skip"),
        ("label", "B")], "labels.jsonl should hold each choice and the undo, one line each, in order"
    assert lines[2]["pair_id"] == lines[3]["pair_id"] == lines[4]["pair_id"], "the undo, then the key, on the tied pair"
    assert {r["labeller"] for r in lines} == {"me"}
    assert lines[0]["completions"][lines[0]["shown_first"]].strip() in first_a, "shown_first names the text shown as A"
    labels, problems, _ = read_label_file(labels_file)
    assert problems == []
    assert [r["choice"] for r in labels] == ["A", "B", "A", "skip", "B"]
    assert len({r["pair_id"] for r in labels}) == 5
    saved = labels_file.read_bytes()

    # a reload keeps the kernel; the panel's cell alone runs again in it and resumes after the last label
    page.reload()
    wait_for_notebook(page)
    cell = page.locator(f"{NOTEBOOK} .jp-Cell", has_text=labeller_cell).first
    cell.locator(".jp-InputArea-prompt").first.click()
    page.keyboard.press("Shift+Enter")
    expect(counter).to_have_text(f"5 of {total} labelled (0 this session)", timeout=120_000)
    expect(status).to_have_text("labels are saved to labels.jsonl", **wait)
    panel.scroll_into_view_if_needed()
    shoot(page, "lab8-labeller-resumed")
    assert labels_file.read_bytes() == saved, "reopening the panel should write nothing"

    run_cells_until(page, "blind_panel(model)")
    blind = page.locator(f".{PANEL_CLASS}", has_text="Blind comparison")
    expect(blind.locator(f".{COUNTER_CLASS}")).to_have_text(re.compile(r"0 of \d+ labelled \(0 this session\)"),
                                                          **wait)
    expect(blind.locator(".rlhf-completion-B")).not_to_have_text("", **wait)
    blind.scroll_into_view_if_needed()
    shoot(page, "lab8-blind-comparison")
    assert "Error" not in page.locator(f"{NOTEBOOK} .jp-Cell", has_text="blind_panel(model)").first.locator(
        ".jp-OutputArea").inner_text()
