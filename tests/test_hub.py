"""A whole class on the class hub (issue 19): release, fetch, submit, collect, grade, return feedback.

A real JupyterHub (hub/jupyterhub_config.py, the proxy from hub/node_modules, as
`make hub` starts it) runs on free ports with its state in a scratch folder, in
its "shared" mode (every server runs as this system user: nothing here creates
system users). The instructor releases two labs through nbgrader's exchange with
`rlhf-course exchange`; learners, each on their own single-user server, fetch,
fill in and submit through their server's nbgrader endpoints (driven over HTTP
through the hub, with the hub's API); one learner uses the browser. The
instructor collects, `rlhf-course grade` grades in its sandbox, and feedback is
released so that each learner fetches only their own.

The labs are the fixture lab (tests/fixtures) twice over, so that grading takes
seconds; the exchange, the hub and the grader are the real ones.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
CLASS = FIXTURES / "class"
PROXY = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")
COURSE = "rlhf-course"
LABS = ("fixlab", "fixlab2")
LIMITS = ["--cell-timeout", "10", "--budget", "120", "--memory-mb", "2048"]
ARTIFACTS = REPO / "test-artifacts" / "hub"
LEARNER_PASSWORD = "learners-" + secrets.token_hex(4)
INSTRUCTOR_PASSWORD = "instructor-" + secrets.token_hex(16)


def _free_ports(n: int) -> int:
    """A port p such that p .. p + n - 1 are free (the hub, its API and the proxy's API)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            socks = []
            for p in range(base, base + n):
                sk = socket.socket()
                socks.append(sk)
                sk.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for sk in socks:
                sk.close()
    raise RuntimeError("no free ports")


class Hub:
    """The running hub, its state folder, and the calls the tests make on it."""

    def __init__(self, url: str, token: str, state: Path, solutions: Path, env: dict):
        import requests

        self.url, self.state, self.solutions, self.env = url, state, solutions, env
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"

    # the hub's REST API
    def api(self, method: str, path: str, **kw):
        r = self.http.request(method, f"{self.url}/hub/api{path}", timeout=120, **kw)
        assert r.status_code < 400 or r.status_code == 409, (method, path, r.status_code, r.text[:500])
        return r

    def start(self, names: list[str]) -> None:
        """Create the users and start their servers (in parallel, as a class arriving does)."""
        self.api("POST", "/users", json={"usernames": [n for n in names if n != "instructor"]})
        for n in names:
            if not self.api("GET", f"/users/{n}").json().get("servers"):
                self.api("POST", f"/users/{n}/server")
        deadline = time.monotonic() + 300
        for n in names:
            while not (self.api("GET", f"/users/{n}").json().get("servers", {}).get("") or {}).get("ready"):
                assert time.monotonic() < deadline, f"{n}'s server did not start; see {self.state}/hub.log"
                time.sleep(0.5)

    # one learner's server, through the hub's proxy
    def server(self, method: str, user: str, path: str, **kw):
        r = self.http.request(method, f"{self.url}/user/{user}{path}", timeout=120, **kw)
        assert r.status_code < 400, (method, user, path, r.status_code, r.text[:500])
        return r

    def assignments(self, user: str, action: str | None = None, lab: str | None = None) -> dict:
        if action is None:
            out = self.server("GET", user, "/assignments", params={"course_id": COURSE}).json()
        else:
            out = self.server("POST", user, f"/assignments/{action}",
                              data={"course_id": COURSE, "assignment_id": lab}).json()
        assert out.get("success", True), out
        return {a["assignment_id"]: a for a in out["value"]} if isinstance(out.get("value"), list) else out

    def put_notebook(self, user: str, rel: str, nb) -> None:
        self.server("PUT", user, f"/api/contents/{rel}", json={"type": "notebook", "format": "json", "content": nb})

    def home(self, user: str) -> Path:
        return self.state / "home" / user

    # the instructor's commands, run as in a terminal on the instructor's server
    def instructor(self, *args: str) -> str:
        home = self.home("instructor")
        home.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "autograder.cli", *args]
        r = subprocess.run(cmd, cwd=home, env=self.env, capture_output=True, text=True, timeout=600)
        assert r.returncode in (0, 1), r.stdout + r.stderr
        return r.stdout + r.stderr

    def exchange(self, action: str, *args: str) -> str:
        return self.instructor("exchange", action, *args, "--course-dir", str(self.home("instructor") / "course"),
                               "--exchange", str(self.state / "exchange"), "--solutions", str(self.solutions))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not PROXY.exists():
        pytest.fail(f"{PROXY} is missing: `make test` installs it (make hub-deps: npm ci --prefix hub)")
    from autograder.sandbox import probe

    if why := probe():
        pytest.skip(why)
    state = tmp_path_factory.mktemp("hub")
    solutions = state / "solutions"
    for lab in LABS:  # the fixture lab, released twice under two names
        shutil.copytree(FIXTURES / "solutions" / "fixlab", solutions / lab)
        (solutions / lab / "fixlab.ipynb").rename(solutions / lab / f"{lab}.ipynb")
    port, token = _free_ports(3), secrets.token_hex(16)
    env = {**os.environ, "RLHF_HUB_DIR": str(state), "RLHF_HUB_PORT": str(port), "RLHF_HUB_USERS": "shared",
           "RLHF_HUB_PASSWORD": LEARNER_PASSWORD, "RLHF_HUB_INSTRUCTOR_PASSWORD": INSTRUCTOR_PASSWORD,
           "RLHF_HUB_SERVICE_TOKEN": token}
    log = open(state / "hub.log", "wb")
    proc = subprocess.Popen([str(JUPYTERHUB), "-f", str(REPO / "hub" / "jupyterhub_config.py")], cwd=state, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hub = Hub(f"http://127.0.0.1:{port}", token, state, solutions, env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if hub.http.get(f"{hub.url}/hub/api/", timeout=5).status_code == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the hub did not start:\n" + (state / "hub.log").read_text()[-3000:])
            time.sleep(0.5)
        yield hub
    finally:
        try:
            for user in hub.api("GET", "/users").json():
                if user.get("servers"):
                    hub.http.delete(f"{hub.url}/hub/api/users/{user['name']}/server", timeout=60)
        except Exception:  # noqa: BLE001 - stopping the hub below stops the servers as well
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _fixture_nb(student: str, lab: str):
    nb = nbformat.read(CLASS / student / "fixlab" / "fixlab.ipynb", as_version=4)
    return json.loads(nbformat.writes(nb))


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as f:
        return {(r["student_id"], r["lab_id"]): r for r in csv.DictReader(f)}


def test_learners_see_only_their_tools(hub):
    """The instructor tools are the instructors': a learner's server has no formgrader."""
    hub.start(["instructor", "lee"])
    lee = hub.http.get(f"{hub.url}/user/lee/formgrader", timeout=60, allow_redirects=False)
    assert lee.status_code == 404
    assert hub.http.get(f"{hub.url}/user/instructor/formgrader", timeout=60).status_code == 200
    page = json.loads((hub.state / "config" / "learner" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyter/nbgrader:create-assignment"] is True


def test_a_class_round_trip(hub):
    """Release two labs; ann (right, after a first blank submission), bob (partly wrong) and
    cat (blank, after the due time) fetch and submit; collect, grade, return feedback."""
    out = hub.exchange("release", *LABS)
    assert "released fixlab, fixlab2" in out, out
    learners = ["ann", "bob", "cat"]
    hub.start(["instructor", *learners])
    for user in learners:
        listed = hub.assignments(user)
        assert {lab: listed[lab]["status"] for lab in LABS} == {lab: "released" for lab in LABS}
        for lab in LABS:
            fetched = hub.assignments(user, "fetch", lab)[lab]
            assert fetched["status"] == "fetched"
    for lab in LABS:
        hub.assignments("ann", "submit", lab)  # ann's first try: the blank copy, as fetched
        hub.put_notebook("ann", f"{lab}/{lab}.ipynb", _fixture_nb("good", lab))
        hub.assignments("ann", "submit", lab)  # ... then the right one: the later one counts
        hub.put_notebook("bob", f"{lab}/{lab}.ipynb", _fixture_nb("wrong_hidden", lab))
        hub.assignments("bob", "submit", lab)
    time.sleep(1.1)
    due = datetime.now(timezone.utc)
    time.sleep(1.1)
    for lab in LABS:
        hub.assignments("cat", "submit", lab)  # blank, after the due time

    out = hub.exchange("collect", *LABS, "--no-owner-check")
    submitted = hub.home("instructor") / "course" / "submitted"
    assert "collected 6 submission(s)" in out, out
    ann = nbformat.read(submitted / "ann" / "fixlab" / "fixlab.ipynb", as_version=4)
    good = nbformat.reads(json.dumps(_fixture_nb("good", "fixlab")), as_version=4)
    assert [c.source for c in ann.cells] == [c.source for c in good.cells], "the later submission counts"

    graded = hub.state / "graded"
    hub.instructor("grade", str(submitted), "--out", str(graded), "--jobs", "2", "--solutions", str(hub.solutions),
                   "--due", due.isoformat(), *LIMITS)
    rows = _rows(graded / "grades.csv")
    scores = {(s, lab): rows[(s, lab)]["auto_score"] for s in learners for lab in LABS}
    assert scores == {(s, lab): {"ann": "6", "bob": "4", "cat": "0"}[s] for s in learners for lab in LABS}
    for lab in LABS:
        assert "submitted late" in rows[("cat", lab)]["flags"]
        assert "submitted late" not in rows[("ann", lab)]["flags"] + rows[("bob", lab)]["flags"]

    out = hub.exchange("feedback", *LABS, "--graded", str(graded))
    assert "released feedback for 6 submission(s)" in out, out
    for user in learners:
        for lab in LABS:
            hub.assignments(user, "fetch_feedback", lab)
        pages = sorted(hub.home(user).glob("*/feedback/*/*.html"))
        assert len(pages) == len(LABS), f"{user} should have one feedback page per lab: {pages}"
        for page in pages:
            lab = page.parents[2].name
            assert page.read_text() == (graded / "feedback" / user / f"{lab}.html").read_text(), \
                f"{user} got feedback that is not their own ({page})"


def test_twenty_learners_submit_at_once(hub):
    """Load: twenty learners start their servers and submit within a minute; every submission is
    collected once, none is lost or mixed up; the time to collect and grade is reported."""
    if not (hub.state / "exchange" / COURSE / "outbound" / "fixlab").is_dir():
        hub.exchange("release", "fixlab")
    names = [f"learner{i:02d}" for i in range(20)]
    t0 = time.perf_counter()
    hub.start(names)
    started = time.perf_counter() - t0

    def work(name: str) -> None:
        hub.assignments(name, "fetch", "fixlab")
        nb = _fixture_nb("good" if int(name[-2:]) % 2 == 0 else "blank", "fixlab")
        nb["metadata"]["rlhf_test_learner"] = name  # to tell, after collecting, whose notebook is whose
        hub.put_notebook(name, "fixlab/fixlab.ipynb", nb)
        hub.assignments(name, "submit", "fixlab")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(work, names))
    submitted_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    hub.exchange("collect", "fixlab", "--no-owner-check")
    collected_s = time.perf_counter() - t1
    submitted = hub.home("instructor") / "course" / "submitted"
    for name in names:
        nb = nbformat.read(submitted / name / "fixlab" / "fixlab.ipynb", as_version=4)
        assert nb.metadata.get("rlhf_test_learner") == name, f"{name}'s submission is someone else's"
    graded = hub.state / "graded-load"
    load = submitted.parent / "load-class"
    for name in names:
        shutil.copytree(submitted / name / "fixlab", load / name / "fixlab")
    t2 = time.perf_counter()
    hub.instructor("grade", str(load), "--out", str(graded), "--jobs", "2", "--solutions", str(hub.solutions), *LIMITS)
    graded_s = time.perf_counter() - t2
    rows = _rows(graded / "grades.csv")
    assert {n: rows[(n, "fixlab")]["auto_score"] for n in names} == \
        {n: "6" if int(n[-2:]) % 2 == 0 else "0" for n in names}
    report = {"learners": len(names), "servers_started_s": round(started, 1),
              "all_submitted_s": round(submitted_s, 1), "collect_s": round(collected_s, 1),
              "grade_s": round(graded_s, 1), "cores": os.cpu_count()}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(report, indent=1))
    print("class hub load:", report)


@pytest.mark.browser
def test_a_learner_in_the_browser(hub):
    """dan logs in with the room's password, fetches a lab from the Assignments list and submits it;
    his nbgrader menu has no instructor tools."""
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not (hub.state / "exchange" / COURSE / "outbound" / "fixlab").is_dir():
        hub.exchange("release", "fixlab")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(180_000)  # a busy 2-core machine starts a server slowly
        try:
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", "dan")
            page.fill("#password_input", LEARNER_PASSWORD)
            page.click("#login_submit")
            page.wait_for_url("**/user/dan/lab**")
            page.wait_for_selector(".jp-LabShell")
            page.get_by_role("menuitem", name="Nbgrader").click()
            menu = page.locator(".lm-Menu").last
            menu.get_by_text("Assignment List").wait_for()
            items = menu.inner_text()
            assert "Formgrader" not in items and "Course List" not in items, items
            menu.get_by_text("Assignment List").click()
            # fixlab is listed first (the round trip may have released fixlab2 as well)
            page.get_by_role("button", name="Fetch", exact=True).first.click()
            page.get_by_role("button", name="Submit", exact=True).wait_for()
            page.screenshot(path=str(ARTIFACTS / "learner-fetched.png"))
            page.get_by_role("button", name="Submit", exact=True).click()
            inbound = hub.state / "exchange" / COURSE / "inbound"
            deadline = time.monotonic() + 120
            while not list(inbound.glob("dan+fixlab+*")):
                assert time.monotonic() < deadline, "dan's submission never reached the exchange"
                time.sleep(0.5)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "learner-submitted.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "learner-FAILED.png"))
            raise
        finally:
            browser.close()
