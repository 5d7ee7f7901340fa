"""A whole class on the class hub (issues 19 and 31): logins, release, fetch, submit, collect, grade,
feedback, learners kept apart, limits.

A real JupyterHub (hub/jupyterhub_config.py, the proxy from hub/node_modules, as `make hub`
starts it) runs on free ports with its state in a scratch folder and a class roster. Run as root,
as CI is, it runs in its "system" mode: every learner and the instructor become system users
(made by the hub, deleted by the fixture), each server runs as its user in a cgroup with the
class's limits, and the instructor's commands run in the instructor's own kernel, as in a
terminal on their server. Run as anyone else, it runs in "shared" mode (every server as this
user) and the tests that need system users are skipped, saying why.

Learners log in with the first passwords the hub issued them; their code runs in their own
kernels, driven over the Jupyter protocol through the hub's proxy. The labs are the fixture lab
(tests/fixtures) twice over, so that grading takes seconds; the exchange, the hub and the grader
are the real ones.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # each test takes seconds to a minute or two

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
CLASS = FIXTURES / "class"
PROXY = REPO / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
JUPYTERHUB = Path(sys.executable).with_name("jupyterhub")
COURSE = "rlhf-course"
LABS = ("fixlab", "fixlab2")
LIMITS = ["--cell-timeout", "10", "--budget", "120", "--memory-mb", "2048"]
ARTIFACTS = REPO / "test-artifacts" / "hub"
SYSTEM = os.geteuid() == 0
NEEDS_ROOT = "learners become system users only when the hub runs as root (CI runs as root)"
LOAD = [f"learner{i:02d}" for i in range(20)]
ROSTER = ["ann", "bob", "cat", "dan", "eve", *LOAD]
MEMORY_LIMIT = "1G"


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


def _open_to_everyone(paths: list[Path], stage: Path) -> list[str]:
    """A command prefix that runs the hub in a mount namespace of its own where every folder on the way
    to ``paths`` can be entered by any user: a folder that others may not enter (here /root, which holds
    pyenv's Python) is covered there by an empty tmpfs that they may, holding only the needed subfolders,
    bound back (through ``stage``, an empty folder). Nothing changes outside the namespace. Empty when
    nothing is in the way."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        path = path.resolve()
        for parent in [*reversed(path.parents)][1:]:
            if not parent.stat().st_mode & 0o001:
                blocked.setdefault(parent, set()).add(path.relative_to(parent).parts[0])
                break
    if not blocked:
        return []
    lines = ["set -e", "mount --make-rprivate /"]
    for i, (folder, children) in enumerate(sorted(blocked.items())):
        for child in sorted(children):
            lines += [f"mkdir -p {stage}/{i}/{child}", f"mount --bind {folder}/{child} {stage}/{i}/{child}"]
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {folder}")
        for child in sorted(children):
            lines += [f"mkdir {folder}/{child}", f"mount --bind {stage}/{i}/{child} {folder}/{child}"]
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--", "sh", "-c", "\n".join(lines), "sh"]


class Hub:
    """The running hub, its state folder, and the calls the tests make on it."""

    def __init__(self, url: str, token: str, state: Path, solutions: Path, env: dict, wrap: list[str]):
        import requests

        self.url, self.state, self.solutions, self.env, self.wrap = url, state, solutions, env, wrap
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        self.token = token
        self.passwords: dict[str, str] = {}
        self.kernels: dict[str, str] = {}
        self.cache: dict = {}

    # the hub's REST API
    def api(self, method: str, path: str, **kw):
        r = self.http.request(method, f"{self.url}/hub/api{path}", timeout=120, **kw)
        assert r.status_code < 400 or r.status_code == 409, (method, path, r.status_code, r.text[:500])
        return r

    def start(self, names: list[str]) -> None:
        """Start the users' servers (in parallel, as a class arriving does)."""
        if learners := [n for n in names if n != "instructor"]:
            self.api("POST", "/users", json={"usernames": learners})
        stopped = [n for n in names if not self.api("GET", f"/users/{n}").json().get("servers")]
        with ThreadPoolExecutor(max_workers=max(1, len(stopped))) as pool:
            list(pool.map(lambda n: self.api("POST", f"/users/{n}/server"), stopped))
        deadline = time.monotonic() + 300
        for n in names:
            while not (self.api("GET", f"/users/{n}").json().get("servers", {}).get("") or {}).get("ready"):
                assert time.monotonic() < deadline, f"{n}'s server did not start; see {self.state}/hub.log"
                time.sleep(0.5)

    def login(self, name: str, password: str):
        """A browser-like session logged in as ``name`` through the login form, or None when refused."""
        import requests

        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=60)
        r = s.post(f"{self.url}/hub/login", data={"username": name, "password": password,
                                                   "_xsrf": s.cookies.get("_xsrf", "")},
                   allow_redirects=False, timeout=60)
        return s if r.status_code == 302 and "jupyterhub-hub-login" in s.cookies else None

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

    # code that a user runs in their own kernel, over the Jupyter protocol
    def _send(self, user: str, msg_type: str, timeout: float, content: dict):
        """Open a websocket to ``user``'s kernel and send one shell request; returns it and the request's id."""
        import websocket

        ws = websocket.create_connection(
            f"{self.url.replace('http', 'ws', 1)}/user/{user}/api/kernels/{self.kernels[user]}/channels",
            header=[f"Authorization: token {self.token}"], timeout=timeout)
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({"channel": "shell", "buffers": [], "metadata": {}, "parent_header": {},
                            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": user,
                                       "session": uuid.uuid4().hex, "version": "5.3",
                                       "date": datetime.now(timezone.utc).isoformat()},
                            "content": content}))
        return ws, msg_id

    @staticmethod
    def _messages(ws, timeout: float):
        """The kernel's messages on ``ws`` (parsed), until ``timeout`` seconds have passed; closes ``ws``."""
        import websocket

        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                # control frames too, so the deadline holds while the server's pings keep the socket alive
                ws.settimeout(left)
                try:
                    opcode, data = ws.recv_data(control_frame=True)
                except websocket.WebSocketTimeoutException:
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    yield json.loads(data)
        finally:
            ws.close()

    def run(self, user: str, code: str, timeout: float = 600) -> dict:
        """Execute ``code`` in ``user``'s kernel (started once); returns its stdout, stderr, error (the
        exception's name) and whether the kernel died meanwhile."""
        if user not in self.kernels:
            self.start([user])
            self.kernels[user] = self.server("POST", user, "/api/kernels", json={"name": "python3"}).json()["id"]
        ws, msg_id = self._send(user, "execute_request", timeout,
                                {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                 "allow_stdin": False, "stop_on_error": True})
        out = {"stdout": "", "stderr": "", "error": None, "died": False}
        replied = idle = False
        for msg in self._messages(ws, timeout):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] in ("restarting", "autorestarting", "dead"):
                out["died"] = True
                return out
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":
                out["error"] = content["ename"]
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            if replied and idle:
                return out
        raise AssertionError(f"{user}'s kernel did not answer within {timeout} s: {out}")

    def answers(self, user: str, timeout: float) -> bool:
        """Whether ``user``'s kernel replies to a kernel_info request within ``timeout`` seconds (it runs
        no code)."""
        ws, msg_id = self._send(user, "kernel_info_request", timeout, {})
        return any(msg["msg_type"] == "kernel_info_reply" and msg.get("parent_header", {}).get("msg_id") == msg_id
                   for msg in self._messages(ws, timeout))

    # the instructor's commands, as in a terminal on the instructor's server
    def instructor(self, *args: str) -> str:
        if SYSTEM:
            code = ("import os, subprocess, sys\n"
                    f"r = subprocess.run([sys.executable, '-m', 'autograder.cli', *{list(args)!r}], "
                    "cwd=os.path.expanduser('~'), capture_output=True, text=True, timeout=600)\n"
                    "print(r.stdout + r.stderr)\nprint('EXIT', r.returncode)\n")
            result = self.run("instructor", code)
            assert not result["died"] and result["error"] is None, result
            text, _, status = result["stdout"].rpartition("EXIT ")
            assert status.strip() in ("0", "1"), result["stdout"] + result["stderr"]
            return text
        home = self.home("instructor")
        home.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "autograder.cli", *args], cwd=home, env=self.env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode in (0, 1), r.stdout + r.stderr
        return r.stdout + r.stderr

    def exchange(self, action: str, *args: str) -> str:
        extra = ["--no-owner-check"] if action == "collect" and not SYSTEM else []
        return self.instructor("exchange", action, *args, *extra, "--course-dir",
                               str(self.home("instructor") / "course"), "--exchange", str(self.state / "exchange"),
                               "--solutions", str(self.solutions))


def _launch(env: dict, folder: Path, wrap: list[str] = ()) -> tuple[subprocess.Popen, object]:
    """Start the hub as `make hub` does (its log in ``folder/hub.log``) and wait until it answers."""
    import requests

    log = open(folder / "hub.log", "wb")
    proc = subprocess.Popen([*wrap, str(JUPYTERHUB), "-f", str(REPO / "hub" / "jupyterhub_config.py")], cwd=folder,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{env['RLHF_HUB_PORT']}/hub/api/", timeout=5).status_code == 200:
                return proc, log
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc, log)
            pytest.fail("the hub did not start:\n" + (folder / "hub.log").read_text()[-3000:])
        time.sleep(0.5)


def _stop(proc: subprocess.Popen, log) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _modes(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.lstat().st_mode, p.lstat().st_gid) for p in [folder, *folder.rglob("*")] if not p.is_symlink()}


def _stop_processes_of(uids: set[int]) -> None:
    """SIGKILL what the hub's users left running (their kernels), by pid."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid in uids:
                    os.kill(int(proc.name), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass


@pytest.fixture(scope="module")
def hub():
    if not PROXY.exists():
        pytest.fail(f"{PROXY} is missing: `make test` installs it (make hub-deps: npm ci --prefix hub)")
    from autograder.grading.sandbox import probe

    if why := probe():
        pytest.skip(why)
    import pwd

    state = Path(tempfile.mkdtemp(prefix="rlhf-hub-"))
    state.chmod(0o755)  # the learners' homes and the exchange are under it
    solutions = state / "solutions"
    for lab in LABS:  # the fixture lab, released twice under two names
        shutil.copytree(FIXTURES / "solutions" / "fixlab", solutions / lab)
        (solutions / lab / "fixlab.ipynb").rename(solutions / lab / f"{lab}.ipynb")
    (state / "roster.csv").write_text("id,first_name,last_name\n" + "".join(f"{n},{n.title()},Test\n" for n in ROSTER))
    port, token = _free_ports(3), secrets.token_hex(16)
    group = f"rlhft{secrets.token_hex(3)}"
    env = {**os.environ, "RLHF_HUB_DIR": str(state), "RLHF_HUB_PORT": str(port),
           "RLHF_HUB_USERS": "system" if SYSTEM else "shared", "RLHF_HUB_ROSTER": str(state / "roster.csv"),
           "RLHF_HUB_SERVICE_TOKEN": token, "RLHF_HUB_MEM_LIMIT": MEMORY_LIMIT, "RLHF_HUB_CPU_LIMIT": "1",
           "RLHF_HUB_INSTRUCTOR_GROUP": group, "RLHF_HUB_SOLUTIONS": f"{REPO / 'solutions'}:{solutions}"}
    wrap, kept = [], {}
    if SYSTEM:
        taken = [n for n in [*ROSTER, "instructor"] if _exists(pwd, n)]
        if taken and _left_by_a_killed_run(pwd, taken):
            from autograder.classhub.hub import remove_system_users

            print(f"removing system users {taken}, left by a hub test that was killed (no process of theirs runs)")
            remove_system_users(taken)
            taken = [n for n in taken if _exists(pwd, n)]
        if taken:
            pytest.fail(f"system users {taken} exist already: this test makes and deletes its own")
        kept = _modes(REPO / "solutions")
        wrap = _open_to_everyone([Path(sys.executable), Path(sys.base_prefix), Path(sys.prefix), REPO, state],
                                 state / "namespace")
    proc = log = None
    hub = Hub(f"http://127.0.0.1:{port}", token, state, solutions, env, wrap)
    try:
        proc, log = _launch(env, state, wrap)
        from autograder.classhub.hub import read_first_passwords

        hub.passwords = read_first_passwords(state / "private" / "first-passwords.csv")
        yield hub
    finally:
        try:  # all at once: the hub stops them side by side (one by one took about 50 s for twenty)
            running = [u["name"] for u in hub.api("GET", "/users").json() if u.get("servers")]
            with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
                list(pool.map(lambda n: hub.http.delete(f"{hub.url}/hub/api/users/{n}/server", timeout=60), running))
        except Exception:  # noqa: BLE001 - stopping the hub below stops the servers as well
            pass
        if proc is not None:
            _stop(proc, log)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(state / "hub.log", ARTIFACTS / "hub.log")
        if SYSTEM:
            _clean_up_system(state, group, kept)
        shutil.rmtree(state, ignore_errors=True)


def _left_by_a_killed_run(pwd, names: list[str]) -> bool:
    """These users were made by a hub test (their comment says so) and nothing runs as them: the
    test that made them was killed before it could delete them."""
    uids = {pwd.getpwnam(n).pw_uid for n in names}
    if not all(pwd.getpwnam(n).pw_gecos.startswith("rlhf-course hub ") for n in names):
        return False
    running = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                running.add(proc.stat().st_uid)
            except OSError:  # the process ended meanwhile
                pass
    return not uids & running


def _exists(pwd, name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _clean_up_system(state: Path, group: str, kept: dict[Path, tuple[int, int]]) -> None:
    """Delete the system users and the group the hub made, its cgroups, and give solutions/ back its modes."""
    import hashlib
    import pwd

    from autograder.classhub.hub import Cgroups, remove_system_users, users_with_comment

    tag = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:8]
    made = users_with_comment(f"rlhf-course hub {tag}")
    _stop_processes_of({pwd.getpwnam(n).pw_uid for n in made})
    time.sleep(0.5)
    remove_system_users(made)
    subprocess.run(["groupdel", group], capture_output=True)
    for path, (mode, gid) in kept.items():
        os.chown(path, -1, gid, follow_symlinks=False)
        path.chmod(stat.S_IMODE(mode))
    cgroups = Cgroups(f"rlhf-hub-{tag}")
    if cgroups.version:
        cgroups.remove_parent()


def _fixture_nb(student: str, lab: str):
    nb = nbformat.read(CLASS / student / "fixlab" / "fixlab.ipynb", as_version=4)
    return json.loads(nbformat.writes(nb))


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as f:
        return {(r["student_id"], r["lab_id"]): r for r in csv.DictReader(f)}


def test_only_the_roster_logs_in_each_with_their_own_password(hub):
    """Every learner on the roster has a password of their own: a classmate's password, or a name that
    is not on the roster, does not log in, and nobody can sign up; a learner's login does not open a
    classmate's server."""
    ann = hub.login("ann", hub.passwords["ann"])
    assert ann is not None, "ann could not log in with her first password"
    assert ann.get(f"{hub.url}/hub/api/user", timeout=60).json()["name"] == "ann"
    assert hub.login("bob", hub.passwords["ann"]) is None, "ann's password opened bob's account"
    assert hub.login("ann", hub.passwords["bob"]) is None, "bob's password opened ann's account"
    assert hub.login("mallory", hub.passwords["ann"]) is None, "a name not on the roster logged in"
    assert hub.login("mallory", "") is None
    assert ann.get(f"{hub.url}/hub/signup", timeout=60).status_code == 404, "anyone could sign up"
    assert set(hub.passwords) == set(ROSTER) | {"instructor"}
    assert len(set(hub.passwords.values())) == len(hub.passwords)
    hub.start(["bob"])
    r = ann.get(f"{hub.url}/user/bob/api/contents", timeout=60)
    assert r.status_code == 403, f"ann reached bob's server: {r.status_code} {r.url}"


def test_a_learner_changes_her_first_password(hub):
    """At /hub/change-password: a short new password is refused; then the first password stops working."""
    first = hub.passwords["eve"]
    eve = hub.login("eve", first)

    def change(new: str) -> str:
        return eve.post(f"{hub.url}/hub/change-password", timeout=60, data={
            "old_password": first, "new_password": new, "new_password_confirmation": new,
            "_xsrf": eve.cookies.get("_xsrf", "")}).text

    assert "changed successfully" not in change("short")
    assert hub.login("eve", "short") is None
    new = "eve-" + secrets.token_hex(8)
    assert "changed successfully" in change(new)
    assert hub.login("eve", first) is None, "the first password still works"
    assert hub.login("eve", new) is not None


def test_an_instructor_sets_a_new_password_for_a_learner(hub):
    """At /hub/change-password/NAME, for a learner who lost theirs; a learner cannot do it for another."""
    instructor, cat = hub.login("instructor", hub.passwords["instructor"]), hub.login("cat", hub.passwords["cat"])
    new = "cat-" + secrets.token_hex(8)

    def reset(session) -> str:
        return session.post(f"{hub.url}/hub/change-password/learner19", timeout=60, data={
            "new_password": new, "new_password_confirmation": new, "_xsrf": session.cookies.get("_xsrf", "")}).text

    assert "changed successfully" not in reset(cat)
    assert hub.login("learner19", new) is None, "a learner changed a classmate's password"
    assert "changed successfully" in reset(instructor)
    assert hub.login("learner19", new) is not None
    assert hub.login("learner19", hub.passwords["learner19"]) is None


def test_learners_see_only_their_tools(hub):
    """The instructor tools are the instructors': a learner's server has no formgrader."""
    hub.start(["instructor", "eve"])
    eve = hub.http.get(f"{hub.url}/user/eve/formgrader", timeout=60, allow_redirects=False)
    assert eve.status_code == 404
    assert hub.http.get(f"{hub.url}/user/instructor/formgrader", timeout=60).status_code == 200
    page = json.loads((hub.state / "config" / "learner" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyter/nbgrader:create-assignment"] is True


def _class_round_trip(hub) -> dict:
    """Release two labs; ann (right, after a first blank submission), bob (partly wrong) and cat (blank,
    after the due time) fetch and submit; collect, grade, return feedback. Done once per hub."""
    if "round_trip" in hub.cache:
        return hub.cache["round_trip"]
    out = hub.exchange("release", *LABS)
    assert "released fixlab, fixlab2" in out, out
    learners = ["ann", "bob", "cat"]
    hub.start(["instructor", *learners])
    roster = hub.instructor("exchange", "roster", str(hub.state / "roster.csv"), "--course-dir",
                            str(hub.home("instructor") / "course"))
    assert f"{len(ROSTER)} student(s)" in roster, roster
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

    collected = hub.exchange("collect", *LABS)
    graded = hub.home("instructor") / "graded"
    hub.instructor("grade", str(hub.home("instructor") / "course" / "submitted"), "--out", str(graded), "--jobs", "2",
                   "--solutions", str(hub.solutions), "--due", due.isoformat(), *LIMITS)
    feedback = hub.exchange("feedback", *LABS, "--graded", str(graded))
    for user in learners:
        for lab in LABS:
            hub.assignments(user, "fetch_feedback", lab)
    hub.cache["round_trip"] = {"learners": learners, "collected": collected, "graded": graded, "feedback": feedback}
    return hub.cache["round_trip"]


def test_a_class_round_trip(hub):
    """Release two labs; ann (right, after a first blank submission), bob (partly wrong) and
    cat (blank, after the due time) fetch and submit; collect, grade, return feedback."""
    done = _class_round_trip(hub)
    learners, graded = done["learners"], done["graded"]
    assert "collected 6 submission(s)" in done["collected"], done["collected"]
    assert "REFUSED" not in done["collected"], done["collected"]
    submitted = hub.home("instructor") / "course" / "submitted"
    ann = nbformat.read(submitted / "ann" / "fixlab" / "fixlab.ipynb", as_version=4)
    good = nbformat.reads(json.dumps(_fixture_nb("good", "fixlab")), as_version=4)
    assert [c.source for c in ann.cells] == [c.source for c in good.cells], "the later submission counts"

    rows = _rows(graded / "grades.csv")
    scores = {(s, lab): rows[(s, lab)]["auto_score"] for s in learners for lab in LABS}
    assert scores == {(s, lab): {"ann": "6", "bob": "4", "cat": "0"}[s] for s in learners for lab in LABS}
    for lab in LABS:
        assert "submitted late" in rows[("cat", lab)]["flags"]
        assert "submitted late" not in rows[("ann", lab)]["flags"] + rows[("bob", lab)]["flags"]

    assert "released feedback for 6 submission(s)" in done["feedback"], done["feedback"]
    for user in learners:
        pages = sorted(hub.home(user).glob("*/feedback/*/*.html"))
        assert len(pages) == len(LABS), f"{user} should have one feedback page per lab: {pages}"
        for page in pages:
            lab = page.parents[2].name
            assert page.read_text() == (graded / "feedback" / user / f"{lab}.html").read_text(), \
                f"{user} got feedback that is not their own ({page})"

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.home('instructor') / 'course' / 'gradebook.db'}", COURSE) as gradebook:
        assert {s.id for s in gradebook.students} >= set(ROSTER), "the roster fills the gradebook"


PROBE = """
import json, os, pathlib
def attempt(kind, path):
    p = pathlib.Path(path)
    try:
        if kind == "list":
            os.listdir(p)
        elif kind == "read":
            p.read_bytes()
        elif kind == "write":
            p.write_text("written by someone else")
        elif kind == "create":
            (p / "planted.txt").write_text("planted by someone else")
        elif kind == "delete":
            p.unlink()
        elif kind == "signal":
            os.kill(int(path), 0)
        return "done"
    except Exception as exc:
        return type(exc).__name__
print(json.dumps({f"{kind} {path}": attempt(kind, path) for kind, path in PROBES}))
"""


def _probe(hub, user: str, probes: list[tuple[str, Path | int]]) -> dict[str, str]:
    result = hub.run(user, f"PROBES = {[(k, str(p)) for k, p in probes]!r}\n" + PROBE)
    assert result["error"] is None and not result["died"], result
    return json.loads(result["stdout"].strip().splitlines()[-1])


@pytest.mark.skipif(not SYSTEM, reason=NEEDS_ROOT)
def test_learners_are_kept_apart(hub):
    """From code ann runs in her own kernel: she cannot read or change bob's home, submissions or
    feedback, nor read the instructor's course folder, the gradebook, solutions/ or the hub's
    database; she can fetch released labs and submit her own, and a submission she makes in bob's
    name is refused at collection."""
    done = _class_round_trip(hub)
    exchange, inbound = hub.state / "exchange" / COURSE, hub.state / "exchange" / COURSE / "inbound"
    bob_submission = sorted(inbound.glob("bob+fixlab+*"))[-1]
    bob_feedback = sorted(hub.home("bob").glob("fixlab/feedback/*/fixlab.html"))[0]
    released_page = exchange / "feedback" / next(p.name for p in (exchange / "feedback").iterdir())
    bob_pid = int(hub.run("bob", "import os; print(os.getpid())")["stdout"])
    lab = sorted((REPO / "solutions").glob("lab*/lab*.ipynb"))[0]
    denied = [
        ("list", hub.home("bob")), ("read", hub.home("bob") / "fixlab" / "fixlab.ipynb"),
        ("create", hub.home("bob")), ("read", bob_feedback),
        ("list", hub.home("instructor")), ("list", hub.home("instructor") / "course"),
        ("read", hub.home("instructor") / "course" / "gradebook.db"), ("read", done["graded"] / "grades.csv"),
        ("list", inbound), ("read", bob_submission / "fixlab.ipynb"),
        ("read", bob_submission / "submission_secret.txt"), ("write", bob_submission / "fixlab.ipynb"),
        ("delete", bob_submission / "fixlab.ipynb"), ("create", bob_submission),
        ("list", exchange / "feedback"), ("write", released_page), ("delete", released_page),
        ("write", exchange / "outbound" / "fixlab" / "fixlab.ipynb"), ("create", exchange / "outbound" / "fixlab"),
        ("list", REPO / "solutions"), ("read", lab), ("read", hub.solutions / "fixlab" / "fixlab.ipynb"),
        ("list", hub.state / "private"), ("read", hub.state / "private" / "jupyterhub.sqlite"),
        ("signal", bob_pid),
    ]
    allowed = [("list", hub.home("ann")), ("read", exchange / "outbound" / "fixlab" / "fixlab.ipynb")]
    seen = _probe(hub, "ann", denied + allowed)
    assert {k: v for k, v in seen.items() if v != "PermissionError" and k in [f"{a} {p}" for a, p in denied]} == {}
    assert {k: v for k, v in seen.items() if k in [f"{a} {p}" for a, p in allowed]} == \
        {f"{a} {p}": "done" for a, p in allowed}

    # The exchange as nbgrader intends: ann fetches a released lab again and submits her own work ...
    hub.server("PATCH", "ann", "/api/contents/fixlab", json={"path": "fixlab-first"})
    hub.assignments("ann", "fetch", "fixlab")
    assert (hub.home("ann") / "fixlab" / "fixlab.ipynb").is_file()
    hub.assignments("ann", "submit", "fixlab")
    # ... but a submission she plants in bob's name, later than his, is refused; bob's own counts.
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    forged = inbound / f"bob+fixlab+{stamp}+forged"
    code = (f"import pathlib, shutil\nd = pathlib.Path({str(forged)!r})\nd.mkdir()\n"
            f"shutil.copy(pathlib.Path.home() / 'fixlab' / 'fixlab.ipynb', d / 'fixlab.ipynb')\n"
            f"(d / 'timestamp.txt').write_text({stamp!r})\nprint('planted')")
    assert "planted" in hub.run("ann", code)["stdout"]
    out = hub.exchange("collect", "fixlab")
    assert f"REFUSED {forged.name} (in bob's name, made by ann)" in out, out
    bob = nbformat.read(hub.home("instructor") / "course" / "submitted" / "bob" / "fixlab" / "fixlab.ipynb", 4)
    theirs = nbformat.reads(json.dumps(_fixture_nb("wrong_hidden", "fixlab")), as_version=4)
    assert [c.source for c in bob.cells] == [c.source for c in theirs.cells], "bob's submission was replaced"
    shutil.rmtree(forged)  # as the instructor would, once seen


@pytest.mark.skipif(not SYSTEM, reason=NEEDS_ROOT)
def test_a_kernel_over_its_memory_limit(hub):
    """dan's kernel allocates past his memory limit: it is stopped (and restarted), the next cell he
    runs says why, his server goes on, and eve's kernel, working meanwhile, keeps its state."""
    from autograder.classhub.hub import Cgroups

    probe = Cgroups(f"rlhf-probe-{os.getpid()}")
    why = probe.enforces_memory()
    if probe.version:
        probe.remove_parent()
    if why:
        pytest.skip(f"this machine enforces no memory limit: {why}")
    hub.start(["dan", "eve"])
    assert hub.run("eve", "x = 41", timeout=120)["error"] is None
    # 1.5 GiB at most, past the 1 GiB limit: where a limit were not enforced after all, the machine lives
    hog = "blocks = []\nfor _ in range(48):\n    blocks.append(b'x' * (32 << 20))\nprint('survived')"
    died = hub.run("dan", hog, timeout=120)
    assert died["died"], f"dan's kernel went past {MEMORY_LIMIT} and lived: {died}"
    assert hub.run("eve", "print(x + 1)")["stdout"].strip() == "42", "eve's kernel lost its state"
    # The server restarts dan's kernel. A request sent while it restarts can be lost without a word (and
    # the server's REST state stays 'busy'), so ask the kernel for its info, which runs no cell and so
    # cannot use up the one-time notice, until it answers; then run the cell.
    deadline = time.monotonic() + 180
    while True:
        try:
            if hub.answers("dan", timeout=15):
                after = hub.run("dan", "print('back', 'blocks' in globals())", timeout=60)
                if not after["died"]:
                    break
            else:
                after = "no kernel_info reply within 15 s"
        except Exception as exc:  # noqa: BLE001 - the kernel may still be restarting
            after = repr(exc)
        assert time.monotonic() < deadline, f"dan's kernel did not come back: {after}"
        time.sleep(1)
    assert after["stdout"].strip() == "back False", after
    assert "memory limit of 1.0 GiB" in after["stderr"], after
    assert "memory limit" not in hub.run("dan", "print(1)")["stderr"], "the notice is said once"
    assert (hub.api("GET", "/users/dan").json()["servers"][""] or {}).get("ready")


def test_twenty_learners_submit_at_once(hub):
    """Load: twenty learners start their servers and submit within a minute; every submission is
    collected once, none is lost or mixed up; the time to collect and grade is reported."""
    if not (hub.state / "exchange" / COURSE / "outbound" / "fixlab").is_dir():
        hub.exchange("release", "fixlab")
    t0 = time.perf_counter()
    hub.start(LOAD)
    started = time.perf_counter() - t0

    def work(name: str) -> None:
        hub.assignments(name, "fetch", "fixlab")
        nb = _fixture_nb("good" if int(name[-2:]) % 2 == 0 else "blank", "fixlab")
        nb["metadata"]["rlhf_test_learner"] = name  # to tell, after collecting, whose notebook is whose
        hub.put_notebook(name, "fixlab/fixlab.ipynb", nb)
        hub.assignments(name, "submit", "fixlab")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(work, LOAD))
    submitted_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    out = hub.exchange("collect", "fixlab")
    collected_s = time.perf_counter() - t1
    assert "REFUSED" not in out, out
    submitted = hub.home("instructor") / "course" / "submitted"
    for name in LOAD:
        nb = nbformat.read(submitted / name / "fixlab" / "fixlab.ipynb", as_version=4)
        assert nb.metadata.get("rlhf_test_learner") == name, f"{name}'s submission is someone else's"
    graded = hub.home("instructor") / "graded-load"
    load = submitted.parent / "load-class"
    copy = (f"import shutil\nfor name in {LOAD!r}:\n"
            f"    shutil.copytree({str(submitted)!r} + f'/{{name}}/fixlab', {str(load)!r} + f'/{{name}}/fixlab')")
    if SYSTEM:  # the instructor's own files, as the instructor would copy them
        assert hub.run("instructor", copy)["error"] is None
    else:
        exec(copy)
    t2 = time.perf_counter()
    out = hub.instructor("grade", str(load), "--out", str(graded), "--jobs", "2", "--solutions", str(hub.solutions),
                         *LIMITS)
    graded_s = time.perf_counter() - t2
    assert (graded / "grades.csv").is_file(), out
    rows = _rows(graded / "grades.csv")
    assert {n: rows[(n, "fixlab")]["auto_score"] for n in LOAD} == \
        {n: "6" if int(n[-2:]) % 2 == 0 else "0" for n in LOAD}
    report = {"learners": len(LOAD), "mode": "system" if SYSTEM else "shared",
              "servers_started_s": round(started, 1), "all_submitted_s": round(submitted_s, 1),
              "collect_s": round(collected_s, 1), "grade_s": round(graded_s, 1), "cores": os.cpu_count()}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(report, indent=1))
    print("class hub load:", report)


@pytest.mark.browser
def test_a_learner_in_the_browser(hub):
    """dan logs in with his own password, fetches a lab from the Assignments list and submits it;
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
            page.fill("#password_input", hub.passwords["dan"])
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


def test_idle_servers_are_culled(hub):
    """The hub runs jupyterhub-idle-culler with the documented timeout (an hour); run with a timeout of
    one second, the same culler stops an idle learner's server. (Last: it stops every idle server.)"""
    culler = hub.api("GET", "/services/idle-culler").json()
    assert "--timeout=3600" in culler["command"], culler
    assert culler["pid"] and Path(f"/proc/{culler['pid']}").exists(), "the hub's culler is not running"
    hub.start(["cat"])
    time.sleep(2)
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": hub.token, "JUPYTERHUB_API_URL": f"{hub.url}/hub/api"}
    run = subprocess.Popen([sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=1", "--cull-every=2",
                            f"--url={hub.url}/hub/api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while hub.api("GET", "/users/cat").json().get("servers"):
            assert run.poll() is None, run.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the culler did not stop cat's idle server"
            time.sleep(1)
    finally:
        run.terminate()
        run.wait(timeout=30)


def test_a_demo_hub_says_so_on_its_login_page(tmp_path):
    """RLHF_HUB_DEMO: one shared password, any name; the login page warns that anyone can be anyone."""
    import requests

    port = _free_ports(3)
    env = {**os.environ, "RLHF_HUB_DIR": str(tmp_path), "RLHF_HUB_PORT": str(port), "RLHF_HUB_USERS": "shared",
           "RLHF_HUB_DEMO": "1", "RLHF_HUB_PASSWORD": "room-" + secrets.token_hex(4),
           "RLHF_HUB_INSTRUCTOR_PASSWORD": secrets.token_hex(16), "RLHF_HUB_IDLE_TIMEOUT": "0"}
    env.pop("RLHF_HUB_ROSTER", None)
    proc, log = _launch(env, tmp_path)
    try:
        page = requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=60)
        assert "Demo hub: anyone who knows the room" in page.text
        s = requests.Session()
        s.get(f"http://127.0.0.1:{port}/hub/login", timeout=60)
        r = s.post(f"http://127.0.0.1:{port}/hub/login", allow_redirects=False, timeout=60,
                   data={"username": "anyone", "password": env["RLHF_HUB_PASSWORD"], "_xsrf": s.cookies.get("_xsrf")})
        assert r.status_code == 302, "the room's password logs anyone in"
    finally:
        _stop(proc, log)
