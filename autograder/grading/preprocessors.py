"""nbgrader preprocessors that make grading safe and honest.

* :class:`SandboxExecute` replaces nbgrader's ``Execute`` in autograding. It
  runs the kernel in the bubblewrap sandbox (kernelspec ``rlhf-sandbox`` over
  ZeroMQ ``ipc``), limits every cell's time, and never lets one bad cell lose
  the whole submission: a cell that times out or kills its kernel gets an error
  output that says so; the kernel is restarted, the cells that ran before are
  replayed to restore the learner's state, and grading goes on with the next
  cell. Every such event is written to a JSON side file for the ``reason``.
  Test cells are *observed* there and *judged* here (:mod:`autograder.grading.judge`):
  the kernel runs only each test's observation program, and after the run
  every test cell's outputs are replaced by the judge's verdict.
* :class:`StrictSaveAutoGrades` scores a test cell by one rule: full points when
  the judge's verdict (written once by :class:`SandboxExecute` to its verdicts
  file) passed, else none. Text on stderr (a warning, a progress bar) and a
  trailing value are ignored (nbgrader would score the first 0 and read the
  second as partial credit).
* :class:`HideHiddenTests` runs when feedback is made: test cells lose their
  hidden part, their tracebacks are reduced to the exception line, and any
  output anywhere that quotes a hidden test is replaced by a notice.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets import Dict, Float, Integer, List, Unicode

from rlhf_helpers.observations import MIME

from nbgrader import utils
from nbgrader.preprocessors import Execute, NbGraderPreprocessor, SaveAutoGrades

from autograder.cells import ANSI, grade_id, is_test_cell, leaks
from autograder.grading import judge as J
from autograder.grading.records import Settings

_LIMITS = Settings()  # the one home of the limits' defaults
TIMEOUT_ENAME, DIED_ENAME, NOT_RUN_ENAME = J.TIMEOUT_ENAME, J.DIED_ENAME, J.NOT_RUN_ENAME


NOT_RUN_WHILE_GRADING = ("not run while grading: a long run that no graded test needs (your own notebook runs it; "
                         "grading skips it to keep grading fast)")
SKIPPED_KEY = "rlhf_course_skipped"


def skipped_output() -> NotebookNode:
    """The output a cell skipped while grading gets (feedback shows it)."""
    return NotebookNode(output_type="display_data", metadata={SKIPPED_KEY: True},
                        data={"text/plain": f"[{NOT_RUN_WHILE_GRADING}]"})


def error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _signal_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    import signal

    if code < 0 or code > 128:
        num = -code if code < 0 else code - 128
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = f"signal {num}"
        what = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed", "SIGABRT": "aborted"}.get(name, name)
        return f"{what} ({name})"
    return f"exit status {code}"


class SandboxExecute(Execute):
    """nbgrader's ``Execute``, with per-cell limits, crash recovery and a time budget."""

    kernel_name = Unicode("rlhf-sandbox").tag(config=True)
    timeout = Integer(_LIMITS.cell_timeout, help="seconds a cell may run").tag(config=True)
    budget = Float(float(_LIMITS.budget), help="seconds the whole notebook may run; later cells are not run").tag(config=True)
    max_restarts = Integer(3, help="kernel restarts (after a crash or timeout) before the rest is not run").tag(config=True)
    events_path = Unicode("", help="JSON file to record timeouts, crashes and skipped cells in").tag(config=True)
    verdicts_path = Unicode("", help="JSON file to write each test's verdict to (grade_id -> passed, ename, message)"
                            ).tag(config=True)
    memory_mb = Integer(0, help="memory cap of the kernel (for messages only)").tag(config=True)
    kernel_log = Unicode("", help="the sandboxed kernel's own stderr (quoted when it dies)").tag(config=True)
    tests = Dict(help="grade_id -> the lab source's test cell (hidden tests included); these are observed and judged").tag(config=True)
    learner_names = List(Unicode(), help="names the learner writes (never defined on the judging side)").tag(config=True)
    equivalents = Dict(help="graded name -> dotted paths of the ready-made equivalents it must not use").tag(config=True)
    provenance_path = Unicode("", help="JSON file to write the graded functions' provenance to").tag(config=True)
    handed_out = List(Unicode(), help="kit 'module.name' the lab's own code uses ('module.*': all of it)").tag(config=True)
    given = List(Unicode(), help="sources of the released copy's code cells (not the learner's writing)").tag(config=True)
    skip = List(Unicode(), help="sources of the lab's cells not run while grading (grading=skip)").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._events: list[dict] = []
        self._ran: list[int] = []
        self._restarts = 0
        self._stop_reason = ""
        self._observations: dict[int, list[dict]] = {}
        self._verdicts: dict[str, dict] = {}
        self._programs = {gid: J.isolated(J.observation_program(src)) for gid, src in self.tests.items()}
        cells = [(self.tests[gid], True) if (gid := self._test_id(c)) is not None else (c.source, False)
                 for c in nb.cells if c.cell_type == "code"]
        self._cells = cells
        self._handed = J.handoffs(cells, {n: list(self.equivalents.get(n, [])) for n in self.learner_names})
        self._deadline = time.monotonic() + self.budget
        self._skip = set(self.skip)
        self.error_on_timeout = {
            "ename": TIMEOUT_ENAME,
            "evalue": f"this cell ran longer than the {self.timeout} s limit and was stopped",
            "traceback": [f"{TIMEOUT_ENAME}: this cell ran longer than the {self.timeout} s limit and was stopped"],
        }
        try:
            nb, resources = super().preprocess(nb, resources, km)
            self._judge_all(nb)
            self._save_provenance(nb)
            return nb, resources
        finally:
            self._save_events()
            if self.verdicts_path:
                Path(self.verdicts_path).write_text(json.dumps(self._verdicts, indent=1))

    # -- observe inside, judge outside ----------------------------------------------
    def _test_id(self, cell) -> str | None:
        gid = grade_id(cell)
        return gid if is_test_cell(cell) and gid in self.tests else None

    def _run(self, cell, index: int, store_history: bool):
        """Execute ``cell``; a test cell runs only its observation program, and its
        observations are taken out of its outputs."""
        gid = self._test_id(cell)
        if gid is None:
            return self.execute_cell(cell, index, store_history=store_history)
        original = cell.source
        cell.source = self._programs[gid]
        try:
            cell = self.execute_cell(cell, index, store_history=store_history)
        finally:
            cell.source = original
            outputs = list(cell.get("outputs", []))
            self._observations[index] = [o["data"][MIME] for o in outputs if _is_observation(o)]
            cell.outputs = [o for o in outputs if not _is_observation(o)]
        return cell

    def _judge_all(self, nb) -> None:
        verdicts: dict[str, J.Verdict] = {}
        cells: dict[str, tuple] = {}
        for index, cell in enumerate(nb.cells):
            gid = self._test_id(cell)
            if gid is None:
                continue
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            ours = [o for o in errors if o.get("ename") in (TIMEOUT_ENAME, DIED_ENAME, NOT_RUN_ENAME)]
            kept = [o for o in cell.get("outputs", []) if o.get("output_type") != "error"]
            cells[gid] = (cell, kept, errors)
            if ours:
                verdicts[gid] = J.Verdict(False, ours[0].get("ename"), str(ours[0].get("evalue", "")))
                continue
            verdicts[gid] = J.judge_test(self.tests[gid], self._observations.get(index, []), set(self.learner_names),
                                         {n: list(self.equivalents.get(n, [])) for n in self.learner_names},
                                         self._handed, timeout=float(self.timeout), label=gid)
        verdicts = J.gate_error_tests(verdicts, self.tests, set(self.learner_names))
        late: set[str] = set()  # tests after a hidden test ran: the learner's code may carry its inputs in any message
        seen_hidden = False
        for gid in list(verdicts):
            if seen_hidden:
                late.add(gid)
                verdicts[gid] = J.after_hidden(verdicts[gid], self.tests[gid], set(self.learner_names))
            seen_hidden = seen_hidden or bool(J.hidden_ranges(self.tests[gid]))
        for gid, verdict in verdicts.items():
            cell, kept, errors = cells[gid]
            if verdict.passed:
                cell.outputs = kept
                self._verdicts[gid] = {"passed": True, "ename": None, "message": ""}
                continue
            ename, message = verdict.ename, J.shown(verdict, late=gid in late)
            if ename == J.NOT_OBSERVED and errors:
                e = errors[0]
                ename = J.plain_ename([str(e.get("ename") or "")])
                said = "" if J.hidden_ranges(self.tests[gid]) or gid in late or ename == "Exception" else \
                    f": {ANSI.sub('', str(e.get('evalue', '')))[:200]}"
                message = f"this test stopped early in your notebook: {ename}{said}"
            cell.outputs = kept + [error_output(ename, message)]
            self._verdicts[gid] = {"passed": False, "ename": ename, "message": message}

    def _save_provenance(self, nb) -> None:
        """What each graded function relied on (static, and as the kernel reported), and the
        learner's code that reaches into the grading machinery (:mod:`autograder.grading.provenance`)."""
        if not self.provenance_path:
            return
        from autograder.grading import provenance as P

        names = list(self.learner_names)
        ran: dict[str, set[str]] = {}
        for index, cell in enumerate(nb.cells):
            gid = self._test_id(cell)
            if gid is None:
                continue
            used = {u for record in self._observations.get(index, []) for u in (record.get("used") or [])
                    if isinstance(u, str)}
            for name in J.observed_names(self.tests[gid]) & set(names):
                ran.setdefault(name, set()).update(u for u in used if u.startswith(P.KIT + "."))
        handed = {tuple(h.split(".", 1)) for h in self.handed_out if "." in h}
        found = P.provenance(self._cells, names, J.first_tests(self._cells, names), handed, ran)
        given = set(self.given)
        mine = [(i, c.source) for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and self._test_id(c) is None and c.source not in given]
        Path(self.provenance_path).write_text(json.dumps(P.as_data(found, P.machinery_flags(mine)), indent=1))

    # -- events ----------------------------------------------------------------
    def _event(self, kind: str, index: int, cell, detail: str) -> None:
        gid = grade_id(cell)
        self._events.append({"kind": kind, "cell": index, "grade_id": gid, "detail": detail})

    def _save_events(self) -> None:
        if self.events_path:
            Path(self.events_path).write_text(json.dumps(self._events, indent=1))

    # -- execution ---------------------------------------------------------------
    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, self.resources
        if not self._stop_reason and time.monotonic() > self._deadline:
            self._stop_reason = f"the notebook used up its {self.budget:.0f} s time budget"
        if self._stop_reason:
            cell.outputs = [error_output(NOT_RUN_ENAME, f"not run: {self._stop_reason}")]
            self._event("not_run", index, cell, self._stop_reason)
            return cell, self.resources
        if cell.source in self._skip and self._test_id(cell) is None:
            cell.outputs = [skipped_output()]
            self._event("skipped", index, cell, NOT_RUN_WHILE_GRADING)
            return cell, self.resources
        self._check_assign_resources(resources)
        try:
            cell = self._run(cell, index, store_history=True)
        except DeadKernelError:
            detail = self._death_detail()
            cell.outputs = list(cell.get("outputs", [])) + [error_output(DIED_ENAME, detail)]
            self._event("died", index, cell, detail)
            self._recover()
            return cell, self.resources
        except CellTimeoutError:  # an IOPub timeout that nbclient raised anyway
            cell.outputs = list(cell.get("outputs", [])) + [error_output(TIMEOUT_ENAME, self.error_on_timeout["evalue"])]
        if any(o.get("output_type") == "error" and o.get("ename") == TIMEOUT_ENAME for o in cell.outputs):
            self._event("timeout", index, cell, f"stopped after {self.timeout} s")
            self._recover()  # the interrupt may not have stopped it: start clean
            return cell, self.resources
        self._ran.append(index)
        return cell, self.resources

    def _death_detail(self) -> str:
        code = None
        try:
            proc = getattr(self.km.provisioner, "process", None)
            if proc is not None:
                code = proc.poll()
        except Exception:  # noqa: BLE001 - best effort only
            pass
        text = f"the kernel running this notebook died ({_signal_text(code)})"
        last = self._kernel_log_tail()
        if last:
            text += f", its last words: {last!r}"
        if code in (-9, 137) and self.memory_mb:
            text += f"; it may have used more than the {self.memory_mb} MiB memory cap"
        return text + ". The kernel was restarted and the cells before this one were run again"

    def _kernel_log_tail(self) -> str:
        try:
            lines = [ln.strip() for ln in Path(self.kernel_log).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        noise = ("To connect another client", "--existing", "NOTE: When using", "To exit, you will", "To read more",
                 "\"quit\" from a client", "Kernel is running over")
        lines = [ln for ln in lines if not any(n in ln for n in noise)]
        return lines[-1][:200] if lines else ""

    def _recover(self) -> None:
        """Restart the kernel and replay the cells that ran, or stop running cells."""
        from jupyter_core.utils import run_sync

        if self._restarts >= self.max_restarts:
            self._stop_reason = f"the kernel had to be restarted {self._restarts} times already"
            return
        self._restarts += 1
        try:
            run_sync(self.km.restart_kernel)(now=True)
            try:
                self.kc.stop_channels()
            except Exception:  # noqa: BLE001
                pass
            run_sync(self.async_start_new_kernel_client)()
        except Exception as exc:  # noqa: BLE001 - reported, never raised
            self._stop_reason = f"the kernel could not be restarted ({type(exc).__name__}: {exc})"
            return
        for index in list(self._ran):
            if self._test_id(self.nb.cells[index]) is not None:
                continue  # tests leave no state behind: nothing to restore
            replay = copy.deepcopy(self.nb.cells[index])
            try:
                replay = self._run(replay, index, store_history=False)
            except (DeadKernelError, CellTimeoutError):
                self._stop_reason = f"replaying cell {index} after a restart failed"
                return
            if any(o.get("output_type") == "error" and o.get("ename") == TIMEOUT_ENAME for o in replay.outputs):
                self._stop_reason = f"replaying cell {index} after a restart timed out"
                return


def _is_observation(output) -> bool:
    return output.get("output_type") == "display_data" and MIME in (output.get("data") or {})


def read_verdicts(path: str | Path) -> dict[str, dict]:
    """The verdicts :class:`SandboxExecute` wrote (none when the file is missing or unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


class StrictSaveAutoGrades(SaveAutoGrades):
    """``SaveAutoGrades`` with one rule for test cells: full points when the judge's verdict passed
    (read from the verdicts :class:`SandboxExecute` wrote), else none; a test without a verdict scores 0."""

    verdicts_path = Unicode("", help="the verdicts file SandboxExecute wrote").tag(config=True)

    def preprocess(self, nb, resources):
        self._verdicts = read_verdicts(self.verdicts_path)
        return super().preprocess(nb, resources)

    def _add_score(self, cell, resources) -> None:
        grade = self.gradebook.find_grade(grade_id(cell), self.notebook_id,
                                          self.assignment_id, self.student_id)
        if utils.is_solution(cell) or cell.cell_type != "code":
            auto_score, _ = utils.determine_grade(cell, self.log)  # written answers: nbgrader's rule
        else:
            points = float(cell.metadata["nbgrader"]["points"])
            auto_score = points if self._verdicts.get(grade_id(cell), {}).get("passed") else 0.0
        grade.auto_score = auto_score
        grade.needs_manual_grade = grade.manual_score is not None or auto_score is None
        self.gradebook.db.commit()


def _output_text(output) -> str:
    parts = [output.get("text", "") or "", output.get("ename", "") or "", output.get("evalue", "") or ""]
    parts += list(output.get("traceback", []) or [])
    for value in (output.get("data", {}) or {}).values():
        parts.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(str(p) for p in parts)


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback without hidden tests: sources cut at ``### BEGIN HIDDEN TESTS``, and nothing the
    learner's code wrote once a hidden test has run.

    A test cell keeps only its verdict (the judge already reduced a hidden failure to its hint,
    :func:`autograder.grading.judge.hidden_failure`). From the first cell that holds hidden tests on, the
    learner's code has seen hidden inputs, so what it prints or shows there and in every later
    cell is left out (a learner's own notebook shows it), and an error keeps only its type: any
    of them could carry the hidden tests' inputs out, encoded or not. Outputs that quote a hidden
    test line are removed anywhere."""

    hidden = Dict(help="grade_id -> True for test cells that hold hidden tests").tag(config=True)
    secrets = List(Unicode(), help="hidden-test lines that must not appear anywhere").tag(config=True)
    begin = Unicode("### BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("### END HIDDEN TESTS").tag(config=True)

    def preprocess(self, nb, resources):
        self._seen_hidden = False
        return super().preprocess(nb, resources)

    def _strip_source(self, source: str) -> str:
        out, inside = [], False
        for line in source.splitlines():
            if self.begin in line:
                inside = True
                out.append(line.replace(self.begin, "(hidden tests are not shown)"))
            elif self.end in line:
                inside = False
            elif not inside:
                out.append(line)
        return "\n".join(out)

    def _error(self, out, note: str) -> NotebookNode:
        evalue = ANSI.sub("", str(out.get("evalue", "")))
        if leaks(evalue, self.secrets):
            evalue = "(message withheld: it quotes a hidden test)"
        return NotebookNode(output_type="error", ename=out.get("ename"), evalue=evalue,
                            traceback=[f"{out.get('ename')}: {evalue}", note])

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        gid = grade_id(cell)
        holds_hidden = is_test_cell(cell) and (self.hidden.get(gid) or self.begin in cell.source)
        self._seen_hidden = getattr(self, "_seen_hidden", False) or bool(holds_hidden)
        outputs = list(cell.get("outputs", []))
        if is_test_cell(cell):
            if holds_hidden:
                cell.source = self._strip_source(cell.source)
            note = "(the traceback is not shown: this test cell holds hidden tests)" if holds_hidden else \
                "(the traceback is not shown in feedback)"
            outputs = [self._error(o, note) for o in outputs if o.get("output_type") == "error"] + \
                ([] if self._seen_hidden else [o for o in outputs if o.get("output_type") == "stream"])
        elif any((o.get("metadata") or {}).get(SKIPPED_KEY) for o in outputs):
            outputs = [o for o in outputs if (o.get("metadata") or {}).get(SKIPPED_KEY)]
        elif self._seen_hidden:
            errors = [o for o in outputs if o.get("output_type") == "error"]
            outputs = [NotebookNode(output_type="error", ename=o.get("ename"), evalue="(not shown in feedback)",
                                    traceback=[f"{o.get('ename')}: (the message is not shown in feedback once hidden "
                                               "tests have run; run your notebook to see it)"]) for o in errors[:1]]
            if len(outputs) < len([o for o in cell.get("outputs", []) if o.get("output_type") != "error"]) + len(errors):
                outputs.insert(0, NotebookNode(output_type="stream", name="stdout", text=OUTPUTS_NOT_SHOWN))
        clean = []
        for out in outputs:
            if leaks(_output_text(out), self.secrets):
                out = NotebookNode(output_type="stream", name="stdout",
                                   text="[output removed by the grader: it quotes a hidden test]\n")
            clean.append(out)
        cell.outputs = clean
        return cell, resources


OUTPUTS_NOT_SHOWN = ("[outputs of this cell are not shown in feedback: it ran after hidden tests had run; "
                     "run your notebook to see them]\n")
