"""The class hub: JupyterHub for one machine (a lab room, a workshop, the kit's own tests).

Started by ``make hub`` (docs/HUB.md). Settings come from the environment:

RLHF_HUB_ROSTER              the class roster: a CSV with an 'id' column (nbgrader's student CSV). Only
                             these learners and the instructors can log in; each gets an account with a
                             first password of their own, written to $RLHF_HUB_DIR/private/first-passwords.csv
                             for the instructor to hand out (learners change it at /hub/change-password)
RLHF_HUB_INSTRUCTORS         comma-separated instructor user names (default: instructor); they are the
                             hub's admins
RLHF_HUB_DIR                 state: private/ (the hub's database, first passwords; root only), the
                             exchange, config/, the homes of the users the hub makes (default hub/state)
RLHF_HUB_IP, RLHF_HUB_PORT   where the hub listens (default 127.0.0.1:8000; 0.0.0.0 for a room)
RLHF_HUB_SSL_CERT, _KEY      HTTPS: the certificate and key files (without them, passwords cross the
                             room's network in clear unless a TLS proxy stands in front)
RLHF_HUB_USERS               "system" (each learner a system user: isolated; the hub runs as root) or
                             "shared" (every server runs as the hub's user: NOT isolated, for a demo or
                             the tests only). Default: system when run as root, else shared.
RLHF_HUB_MEM_LIMIT           each learner's memory (server and kernels together; default 2G)
RLHF_HUB_CPU_LIMIT           each learner's CPU share in cores (default 1)
RLHF_HUB_PIDS_LIMIT          each learner's processes and threads (default 1024). The three limits are
                             enforced in system mode where root can make cgroups; the hub says when not.
                             Instructors' servers have none (they grade).
RLHF_HUB_IDLE_TIMEOUT        seconds after which an idle server is stopped (jupyterhub-idle-culler;
                             default 3600; 0: never)
RLHF_HUB_SOLUTIONS           answer-key folders that only instructors may read (':'-separated; default the
                             kit's solutions/); system mode gives them to RLHF_HUB_INSTRUCTOR_GROUP
                             (default rlhf-instructors) at start
RLHF_HUB_SERVICE_TOKEN       optional: an API token for scripts (the kit's tests) with admin scopes

RLHF_HUB_DEMO=1              a demo hub instead: anyone with the room's password (RLHF_HUB_PASSWORD) logs
                             in under any name, instructors with RLHF_HUB_INSTRUCTOR_PASSWORD; the login
                             page says so. Never for a graded class.

Every learner's server runs the kit's environment (this venv) with the tiny
profile, nbgrader's exchange set to ``$RLHF_HUB_DIR/exchange`` and only the
learner's tools (fetch, validate, submit): the formgrader, "Create Assignment"
and the course list are the instructors' (``make setup`` turns them off for
learners; the instructors' servers turn them back on).
"""

import hashlib
import os
import sys
from pathlib import Path

from autograder.classhub.exchange import COURSE_ID, read_roster, write_role_config

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)

KIT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("RLHF_HUB_DIR") or KIT / "hub" / "state").resolve()
PRIVATE, EXCHANGE, HOMES = STATE / "private", STATE / "exchange", STATE / "home"
INSTRUCTORS = {n.strip() for n in os.environ.get("RLHF_HUB_INSTRUCTORS", "instructor").split(",") if n.strip()}
USERS = os.environ.get("RLHF_HUB_USERS") or ("system" if os.geteuid() == 0 else "shared")
DEMO = os.environ.get("RLHF_HUB_DEMO", "") not in ("", "0")
IDLE_TIMEOUT = int(os.environ.get("RLHF_HUB_IDLE_TIMEOUT", "3600"))
if USERS not in ("system", "shared"):
    sys.exit(f"RLHF_HUB_USERS should be 'system' or 'shared', got {USERS!r}")
if USERS == "system" and os.geteuid() != 0:
    sys.exit("RLHF_HUB_USERS=system needs the hub to run as root (it starts each learner's server as their user)")

for folder, mode in ((STATE, 0o755), (PRIVATE, 0o700), (HOMES, 0o755), (EXCHANGE, 0o1777)):
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(mode)  # the exchange: everyone writes, only owners delete (sticky); private: the hub's alone


def _password(name: str, least: int) -> str:
    value = os.environ.get(name, "")
    if len(value) < least:
        sys.exit(f"set {name} (at least {least} characters) before starting the demo hub; see docs/HUB.md")
    return value


# ---------------------------------------------------------------------------- the hub
c.JupyterHub.ip = os.environ.get("RLHF_HUB_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("RLHF_HUB_PORT", "8000"))
c.JupyterHub.hub_port = int(os.environ.get("RLHF_HUB_API_PORT", str(c.JupyterHub.port + 1)))
c.JupyterHub.db_url = f"sqlite:///{PRIVATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(PRIVATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(PRIVATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [str(KIT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(PRIVATE / "proxy.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{c.JupyterHub.port + 2}"
c.JupyterHub.cleanup_servers = True
if os.environ.get("RLHF_HUB_SSL_CERT"):
    c.JupyterHub.ssl_cert = os.environ["RLHF_HUB_SSL_CERT"]
    c.JupyterHub.ssl_key = os.environ.get("RLHF_HUB_SSL_KEY", "")

# ---------------------------------------------------------------------------- who may log in
c.Authenticator.admin_users = INSTRUCTORS
c.Authenticator.username_pattern = r"^[a-z][a-z0-9_-]{1,31}$"  # also a valid system user name and student id
if DEMO:
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = _password("RLHF_HUB_PASSWORD", 8)
    c.SharedPasswordAuthenticator.admin_password = _password("RLHF_HUB_INSTRUCTOR_PASSWORD", 32)
    c.Authenticator.allow_all = True  # a room's learners pick their own name
    c.JupyterHub.template_vars = {"announcement_login": (
        "Demo hub: anyone who knows the room's password can log in under any name, a classmate's too. "
        "Nothing here is private, and nothing submitted here says who did the work.")}
else:
    roster = os.environ.get("RLHF_HUB_ROSTER", "")
    if not roster:
        sys.exit("set RLHF_HUB_ROSTER to the class roster (a CSV with an 'id' column; docs/HUB.md), "
                 "or RLHF_HUB_DEMO=1 for a demo hub with one shared password")
    try:
        STUDENTS = [s.id for s in read_roster(Path(roster))]
    except (OSError, ValueError) as exc:
        sys.exit(f"RLHF_HUB_ROSTER: {exc}")
    c.JupyterHub.authenticator_class = "autograder.classhub.hub.RosterAuthenticator"
    c.Authenticator.allowed_users = set(STUDENTS) | INSTRUCTORS
    c.Authenticator.allow_existing_users = False  # the roster alone says who may log in
    c.RosterAuthenticator.first_passwords_file = str(PRIVATE / "first-passwords.csv")
    c.RosterAuthenticator.enable_signup = False  # accounts come from the roster, with first passwords
    c.RosterAuthenticator.minimum_password_length = 10  # ... that learners change to one of their own
    c.RosterAuthenticator.check_common_password = True
    c.RosterAuthenticator.allowed_failed_logins = 10  # then a name is locked for a minute
    c.RosterAuthenticator.seconds_before_next_try = 60

services, roles = [], []
token = os.environ.get("RLHF_HUB_SERVICE_TOKEN")
if token:
    services.append({"name": "course-admin", "api_token": token})
    roles.append({"name": "course-admin", "services": ["course-admin"],
                  "scopes": ["admin:users", "admin:servers", "access:servers", "tokens", "list:users",
                             "read:services"]})
if IDLE_TIMEOUT > 0:
    services.append({"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                                                        f"--timeout={IDLE_TIMEOUT}",
                                                        f"--cull-every={max(30, min(300, IDLE_TIMEOUT // 4))}"]})
    roles.append({"name": "idle-culler", "services": ["idle-culler"],
                  "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]})
c.JupyterHub.services = services
c.JupyterHub.load_roles = roles

# ---------------------------------------------------------------------------- one server per user
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 300  # twenty servers starting at once on a busy 2-core machine took over 120 s
c.Spawner.start_timeout = 360
c.Spawner.environment = {"RLHF_COURSE_PROFILE": os.environ.get("RLHF_COURSE_PROFILE", "tiny"),
                         "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                         "RLHF_EXCHANGE": str(EXCHANGE), "OMP_NUM_THREADS": "1"}
LIMITS = {"mem_limit": os.environ.get("RLHF_HUB_MEM_LIMIT", "2G"),
          "cpu_limit": float(os.environ.get("RLHF_HUB_CPU_LIMIT", "1")),
          "pids_limit": int(os.environ.get("RLHF_HUB_PIDS_LIMIT", "1024"))}

if USERS == "system":
    import pwd

    from autograder.classhub import hub as H

    tag = hashlib.sha256(str(STATE).encode()).hexdigest()[:8]
    group = os.environ.get("RLHF_HUB_INSTRUCTOR_GROUP", "rlhf-instructors")
    gid = H.ensure_group(group)
    comment = f"rlhf-course hub {tag}"  # how the users this hub made are told apart
    for name in sorted(INSTRUCTORS):
        H.ensure_system_user(name, HOMES, comment, (group,))
    # The course's exchange folder belongs to the first instructor (nbgrader releases only into a folder
    # its user owns; made here, no learner can take the name first) and to the instructors' group
    # (setgid: inbound/, outbound/ and every submission in them belong to the group).
    course = EXCHANGE / COURSE_ID
    course.mkdir(exist_ok=True)
    os.chown(course, pwd.getpwnam(sorted(INSTRUCTORS)[0]).pw_uid, gid)
    course.chmod(0o2775)
    for folder in os.environ.get("RLHF_HUB_SOLUTIONS", str(KIT / "solutions")).split(":"):
        if folder and Path(folder).is_dir():
            H.lock_answer_key(Path(folder), group)  # learners must not read the answer key
    if why := H.unreachable(Path(sys.executable), f"import jupyterhub.singleuser, autograder.classhub.memory_notice, os; "
                                                  f"os.stat({str(EXCHANGE / '.')!r})"):
        sys.exit(f"rlhf-course hub: a learner's user could not start a server: {why}. Every user must be able to "
                 f"run {sys.executable} and read the kit and {STATE}: create the venv from a Python outside any "
                 f"private home (e.g. `make setup PYTHON=/usr/bin/python3.11`) and keep the kit and "
                 f"RLHF_HUB_DIR in folders others may enter (docs/HUB.md).")
    cgroups = H.Cgroups(f"rlhf-hub-{tag}")
    if why := cgroups.probe():
        cgroups = None
        print(f"rlhf-course hub: the learners' memory, CPU and process limits are NOT enforced: {why}. "
              "Run the hub where root may make cgroups (docs/HUB.md).", file=sys.stderr)
    c.JupyterHub.spawner_class = "autograder.classhub.hub.ClassHubSpawner"
    c.ClassHubSpawner.home_root = str(HOMES)
    c.ClassHubSpawner.user_comment = comment
    c.ClassHubSpawner.instructors = INSTRUCTORS
    c.ClassHubSpawner.instructor_group = group
    c.ClassHubSpawner.cgroups = cgroups
else:
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
    if os.geteuid() == 0:
        c.Spawner.args = ["--allow-root"]  # the servers run as the hub's user, here root
    print("rlhf-course hub: RLHF_HUB_USERS=shared: every server runs as this system user, so learners are "
          "NOT isolated from each other or from the instructors' files, and no limits are enforced. Use it "
          "for a demo or the tests; for a class, run the hub as root (system users) or on Kubernetes "
          "(docs/HUB.md).", file=sys.stderr)


ROLE_CONFIG = {role: write_role_config(STATE / "config" / role, role, EXCHANGE, COURSE_ID)
               for role in ("learner", "instructor")}


def _home(spawner) -> Path:
    if USERS == "shared":
        return Path(spawner.home_dir)
    import pwd

    try:
        return Path(pwd.getpwnam(spawner.user.name).pw_dir)
    except KeyError:
        return HOMES / spawner.user.name  # made by the spawner as it starts


def pre_spawn_hook(spawner):
    role = "instructor" if spawner.user.name in INSTRUCTORS else "learner"
    home = _home(spawner)
    if role == "learner":
        for name, value in LIMITS.items():
            if hasattr(spawner, name):
                setattr(spawner, name, value)
    # The role's config is shared; each user's own JupyterLab settings and workspaces stay in their home.
    spawner.environment = {**spawner.environment, "JUPYTER_CONFIG_DIR": str(ROLE_CONFIG[role]),
                           "JUPYTER_PATH": str(ROLE_CONFIG[role] / "data"),
                           "JUPYTERLAB_SETTINGS_DIR": str(home / ".jupyter" / "lab" / "user-settings"),
                           "JUPYTERLAB_WORKSPACES_DIR": str(home / ".jupyter" / "lab" / "workspaces"),
                           "RLHF_HUB_ROLE": role}


c.Spawner.pre_spawn_hook = pre_spawn_hook
if DEMO:
    print("rlhf-course hub: RLHF_HUB_DEMO: one shared password, any name: anyone can log in as anyone. "
          "For a class, set RLHF_HUB_ROSTER instead (docs/HUB.md).", file=sys.stderr)
