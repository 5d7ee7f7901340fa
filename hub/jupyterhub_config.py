"""The class hub: JupyterHub for one machine (a lab room, a workshop, the kit's own tests).

Started by ``make hub`` (docs/HUB.md). Settings come from the environment:

RLHF_HUB_DIR                 state: the hub's database, the exchange, the users' homes (default hub/state)
RLHF_HUB_IP, RLHF_HUB_PORT   where the hub listens (default 127.0.0.1:8000; 0.0.0.0 for a room)
RLHF_HUB_PASSWORD            the learners' shared password (a lab-room login; at least 8 characters)
RLHF_HUB_INSTRUCTOR_PASSWORD the instructors' password (at least 32 characters, not the learners')
RLHF_HUB_INSTRUCTORS         comma-separated instructor user names (default: instructor)
RLHF_HUB_USERS               "system" (each learner a system user: isolated; the hub runs as root)
                             or "shared" (every server runs as the hub's user: NOT isolated, for a
                             demo or the tests only). Default: system when run as root, else shared.
RLHF_HUB_SERVICE_TOKEN       optional: an API token for scripts (the kit's tests) with admin scopes

Every learner's server runs the kit's environment (this venv) with the tiny
profile, nbgrader's exchange set to ``$RLHF_HUB_DIR/exchange`` and only the
learner's tools (fetch, validate, submit): the formgrader, "Create Assignment"
and the course list are the instructors' (``make setup`` turns them off for
learners; the instructors' servers turn them back on).
"""

import os
import sys
from pathlib import Path

from autograder.exchange import COURSE_ID, write_role_config

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)

KIT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("RLHF_HUB_DIR") or KIT / "hub" / "state").resolve()
EXCHANGE = STATE / "exchange"
INSTRUCTORS = {n.strip() for n in os.environ.get("RLHF_HUB_INSTRUCTORS", "instructor").split(",") if n.strip()}
USERS = os.environ.get("RLHF_HUB_USERS") or ("system" if os.geteuid() == 0 else "shared")
if USERS not in ("system", "shared"):
    sys.exit(f"RLHF_HUB_USERS should be 'system' or 'shared', got {USERS!r}")

for folder in (STATE, STATE / "home"):
    folder.mkdir(parents=True, exist_ok=True)
EXCHANGE.mkdir(parents=True, exist_ok=True)
EXCHANGE.chmod(0o1777)  # nbgrader's exchange: everyone writes, only owners delete (sticky)


def _password(name: str, least: int) -> str:
    value = os.environ.get(name, "")
    if len(value) < least:
        sys.exit(f"set {name} (at least {least} characters) before starting the hub; see docs/HUB.md")
    return value


# ---------------------------------------------------------------------------- the hub
c.JupyterHub.ip = os.environ.get("RLHF_HUB_IP", "127.0.0.1")
c.JupyterHub.port = int(os.environ.get("RLHF_HUB_PORT", "8000"))
c.JupyterHub.hub_port = int(os.environ.get("RLHF_HUB_API_PORT", str(c.JupyterHub.port + 1)))
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [str(KIT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{c.JupyterHub.port + 2}"
c.JupyterHub.cleanup_servers = True

# ---------------------------------------------------------------------------- who may log in
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = _password("RLHF_HUB_PASSWORD", 8)
c.SharedPasswordAuthenticator.admin_password = _password("RLHF_HUB_INSTRUCTOR_PASSWORD", 32)
c.Authenticator.admin_users = INSTRUCTORS
c.Authenticator.allow_all = True  # a room's learners pick their own name (it becomes their student id)
c.Authenticator.username_pattern = r"^[a-z][a-z0-9_-]{1,31}$"  # also a valid system user name and student id

token = os.environ.get("RLHF_HUB_SERVICE_TOKEN")
if token:
    c.JupyterHub.services = [{"name": "course-admin", "api_token": token}]
    c.JupyterHub.load_roles = [{"name": "course-admin", "services": ["course-admin"],
                                "scopes": ["admin:users", "admin:servers", "access:servers", "tokens", "list:users"]}]

# ---------------------------------------------------------------------------- one server per user
if USERS == "system":
    c.JupyterHub.spawner_class = "localprocess"
    c.LocalAuthenticator.create_system_users = True
else:
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "home" / "{username}")
    if os.geteuid() == 0:
        c.Spawner.args = ["--allow-root"]  # the servers run as the hub's user, here root
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 120  # a busy 2-core machine starts twenty servers slowly
c.Spawner.start_timeout = 180
c.Spawner.environment = {"RLHF_COURSE_PROFILE": os.environ.get("RLHF_COURSE_PROFILE", "tiny"),
                         "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                         "RLHF_EXCHANGE": str(EXCHANGE), "OMP_NUM_THREADS": "1"}


ROLE_CONFIG = {role: write_role_config(STATE / "config" / role, role, EXCHANGE, COURSE_ID)
               for role in ("learner", "instructor")}


def pre_spawn_hook(spawner):
    role = "instructor" if spawner.user.name in INSTRUCTORS else "learner"
    home = Path(getattr(spawner, "home_dir", "") or Path("~" + spawner.user.name).expanduser())
    # The role's config is shared; each user's own JupyterLab settings and workspaces stay in their home.
    spawner.environment = {**spawner.environment, "JUPYTER_CONFIG_DIR": str(ROLE_CONFIG[role]),
                           "JUPYTERLAB_SETTINGS_DIR": str(home / ".jupyter" / "lab" / "user-settings"),
                           "JUPYTERLAB_WORKSPACES_DIR": str(home / ".jupyter" / "lab" / "workspaces"),
                           "RLHF_HUB_ROLE": role}


c.Spawner.pre_spawn_hook = pre_spawn_hook
if USERS == "shared":
    print("rlhf-course hub: RLHF_HUB_USERS=shared: every server runs as this system user, so learners are "
          "NOT isolated from each other or from the instructors' files. Use it for a demo or the tests; for "
          "a class, run the hub as root (system users) or on Kubernetes (docs/HUB.md).", file=sys.stderr)
