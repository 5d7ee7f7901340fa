"""The class hub on one machine: the roster, a login of each learner's own, learners kept apart
as system users, and each learner's share of the machine.

``hub/jupyterhub_config.py`` (``make hub``) puts these parts together; docs/HUB.md is the
instructor's guide, and says what each part does not protect against.

- :func:`~autograder.classhub.exchange.read_roster`: the class list, in nbgrader's student CSV (an ``id``
  column, and optionally ``first_name``, ``last_name``, ``email``). It is the hub's allow-list,
  and ``rlhf-course exchange roster`` puts the same students in nbgrader's gradebook.
- :class:`RosterAuthenticator`: JupyterHub's NativeAuthenticator with no sign-up page: the
  hub makes an account for every name on the roster, with a random first password written
  to a file only the hub's owner reads, for the instructor to hand out. Learners change it
  at ``/hub/change-password``; an instructor sets a new one at
  ``/hub/change-password/<name>``. Nobody can claim a classmate's name first.
- :class:`ClassHubSpawner`: JupyterHub's LocalProcessSpawner, with a system user for each
  learner (made on their first start, home readable by them alone) and each server in a
  cgroup of its own with the memory, CPU and process limits set on the spawner, where this
  machine lets root make one (:class:`Cgroups` says why not when it cannot).
- :func:`lock_answer_key`: ``solutions/`` readable by the instructors' group only.
"""

from __future__ import annotations

import csv
import grp
import os
import pwd
import secrets
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from jupyterhub.handlers.login import LoginHandler as HubLoginHandler
from jupyterhub.spawner import LocalProcessSpawner
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from traitlets import Any, Integer, Set, Unicode


# --------------------------------------------------------------------------------- logins
class LoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login page, logging in the way JupyterHub 6 does: NativeAuthenticator
    1.3.0's own ``post`` times each login with ``self.statsd``, which JupyterHub 6 no longer has, so
    every login failed with an error (and its ``_render`` refused JupyterHub 6's error-page arguments)."""

    post = HubLoginHandler.post

    def _render(self, login_error=None, username=None, **_):
        return super()._render(login_error=login_error, username=username)


class RosterAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with accounts for the allowed users only, each with a first password
    issued by the hub (``first_passwords_file``), and no sign-up page."""

    first_passwords_file = Unicode(
        "", config=True,
        help="CSV (student_id,first_password) to which the hub appends the first password of every account "
             "it makes; readable by the hub's owner only. The last line for a name is the one in force.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.issue_first_passwords()

    def issue_first_passwords(self) -> list[str]:
        """Make an account, with a random first password, for every allowed user or admin who has
        none yet; returns their names."""
        import bcrypt
        from nativeauthenticator.orm import UserInfo

        names = sorted(self.allowed_users | self.admin_users)
        new = [name for name in names if UserInfo.find(self.db, name) is None]
        if not new:
            return []
        if not self.first_passwords_file:
            raise ValueError("RosterAuthenticator.first_passwords_file is not set: the first passwords would be lost")
        path = Path(self.first_passwords_file)
        fresh = not path.exists() or path.stat().st_size == 0
        issued = {name: secrets.token_urlsafe(9) for name in new}  # 12 characters, 72 bits
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", newline="") as f:
            writer = csv.writer(f)
            if fresh:
                writer.writerow(["student_id", "first_password"])
            writer.writerows(issued.items())
            f.flush()
            os.fsync(f.fileno())
        for name, password in issued.items():
            self.db.add(UserInfo(username=name, password=bcrypt.hashpw(password.encode(), bcrypt.gensalt()),
                                 is_authorized=True))
        self.db.commit()
        self.log.info("rlhf-course hub: made %d account(s); their first passwords are in %s", len(new), path)
        return new

    def get_handlers(self, app):
        return [(path, LoginHandler if path == r"/login" else handler) for path, handler in super().get_handlers(app)]


def read_first_passwords(path: Path) -> dict[str, str]:
    """{student id: first password} from the hub's first-passwords file (the last line for a name wins)."""
    with open(path, newline="") as f:
        return {row["student_id"]: row["first_password"] for row in csv.DictReader(f)}


# --------------------------------------------------------------------------------- system users
def ensure_group(name: str) -> int:
    """The gid of system group ``name``, made (as a system group) when missing."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run(["groupadd", "--system", name])
        return grp.getgrnam(name).gr_gid


def ensure_system_user(name: str, home_root: Path, comment: str, groups: tuple[str, ...] = ()) -> bool:
    """Make system user ``name`` (own group, bash, home ``home_root/name`` readable by them alone) when
    missing, and add it to ``groups``; returns True when it was made. An existing user keeps its home:
    :func:`home_problem` says when that home is open to others."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        home = Path(home_root) / name
        cmd = ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
               "--comment", comment, "--user-group"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        _run(cmd + [name])
        home.chmod(0o700)
        return True
    missing = [g for g in groups if name not in grp.getgrnam(g).gr_mem and grp.getgrnam(g).gr_gid != entry.pw_gid]
    if missing:
        _run(["usermod", "--append", "--groups", ",".join(missing), name])
    return False


def home_problem(name: str) -> str | None:
    """Why ``name``'s home is not private (readable, writable or searchable by others), or None."""
    home = Path(pwd.getpwnam(name).pw_dir)
    try:
        st = home.stat()
    except FileNotFoundError:
        return f"{name}'s home {home} does not exist"
    if st.st_uid != pwd.getpwnam(name).pw_uid:
        return f"{name}'s home {home} belongs to uid {st.st_uid}, not to {name}"
    if st.st_mode & 0o077:
        return f"{name}'s home {home} is open to others (mode {stat.S_IMODE(st.st_mode):o}); chmod 700 it"
    return None


def users_with_comment(comment: str) -> list[str]:
    """The system users whose comment (GECOS) is ``comment``: the ones a hub made."""
    return sorted(p.pw_name for p in pwd.getpwall() if p.pw_gecos == comment)


def remove_system_users(names: list[str]) -> None:
    """Delete these system users (their homes stay; processes still running block it)."""
    for name in names:
        _run(["userdel", name])


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {(done.stderr or done.stdout).strip()}")


def lock_answer_key(folder: Path, group: str) -> None:
    """``folder`` (solutions/) for its owner and ``group`` only: group read and write (instructors add
    files, e.g. a class's merged labels), nothing for others; new files keep the group (setgid)."""
    gid = grp.getgrnam(group).gr_gid
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        os.chown(path, -1, gid)
        mode = stat.S_IMODE(path.stat().st_mode) & ~0o007
        if path.is_dir():
            mode |= 0o070 | stat.S_ISGID
        else:
            mode |= 0o060 | (0o010 if mode & 0o100 else 0)
        path.chmod(mode)


def unreachable(python: Path, code: str, user: str = "nobody") -> str | None:
    """Why ``user`` (a user with no rights of its own) cannot run ``code`` with ``python``, or None.
    Run as root: a system-user hub checks so that its learners' servers can start at all."""
    entry = pwd.getpwnam(user)
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "HOME": "/"},
                          user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    if done.returncode == 0:
        return None
    said = (done.stderr or done.stdout).strip().splitlines()
    return said[-1] if said else f"exit status {done.returncode}"


# --------------------------------------------------------------------------------- limits
class Cgroups:
    """A cgroup for each learner's server under one parent of this hub's (``parent``): memory, CPU and
    process-count limits, for the server and every kernel it starts. cgroup v2 where its memory and cpu
    controllers are mounted, else v1's memory, cpu and pids hierarchies. Root makes them; the processes
    inside cannot move out (the files are root's).

    :meth:`probe` says whether this machine allows it (containers often mount the cgroup tree
    read-only) and why not."""

    PERIOD_US = 100_000

    def __init__(self, parent: str, mounts: Path = Path("/proc/self/mounts")):
        self.parent = parent
        self.version, self.roots = self._find(Path(mounts))

    @staticmethod
    def _find(mounts: Path) -> tuple[int, dict[str, Path]]:
        v1, v2 = {}, None
        for line in mounts.read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            where, kind, options = Path(parts[1].replace("\\040", " ")), parts[2], parts[3].split(",")
            if kind == "cgroup2":
                try:
                    available = (where / "cgroup.controllers").read_text().split()
                except OSError:
                    continue
                if {"memory", "cpu"} <= set(available):
                    v2 = where
            elif kind == "cgroup":
                for controller in ("memory", "cpu", "pids"):
                    if controller in options:
                        v1.setdefault(controller, where)
        if v2 is not None:
            return 2, {"unified": v2}
        if "memory" in v1:
            return 1, v1
        return 0, {}

    def folders(self, name: str) -> list[Path]:
        """The learner's cgroup folders (one in v2, one per controller in v1)."""
        return [root / self.parent / name for root in dict.fromkeys(self.roots.values())]

    def create(self, name: str, memory_bytes: int = 0, cpus: float = 0.0, pids: int = 0) -> list[Path]:
        """Make (or reuse) ``name``'s cgroup with these limits (0: none); returns the ``cgroup.procs``
        files a process writes its pid to in order to join."""
        if self.version == 0:
            raise OSError("no cgroup hierarchy with a memory controller is mounted")
        if self.version == 2:
            root = self.roots["unified"]
            self._enable(root)
            (root / self.parent).mkdir(exist_ok=True)
            self._enable(root / self.parent)
            folder = root / self.parent / name
            folder.mkdir(exist_ok=True)
            self._write(folder / "memory.max", str(memory_bytes) if memory_bytes else "max")
            if (folder / "memory.swap.max").exists():
                self._write(folder / "memory.swap.max", "0" if memory_bytes else "max")
            self._write(folder / "cpu.max", f"{int(cpus * self.PERIOD_US)} {self.PERIOD_US}" if cpus else
                        f"max {self.PERIOD_US}")
            if (folder / "pids.max").exists():
                self._write(folder / "pids.max", str(pids) if pids else "max")
            return [folder / "cgroup.procs"]
        procs = []
        for controller, root in self.roots.items():
            folder = root / self.parent / name
            folder.mkdir(parents=True, exist_ok=True)
            if controller == "memory":
                self._write(folder / "memory.limit_in_bytes", str(memory_bytes) if memory_bytes else "-1")
            elif controller == "cpu":
                self._write(folder / "cpu.cfs_period_us", str(self.PERIOD_US))
                self._write(folder / "cpu.cfs_quota_us", str(int(cpus * self.PERIOD_US)) if cpus else "-1")
            elif controller == "pids":
                self._write(folder / "pids.max", str(pids) if pids else "max")
            procs.append(folder / "cgroup.procs")
        return list(dict.fromkeys(procs))

    def remove(self, name: str, wait: float = 10.0) -> None:
        """Remove ``name``'s cgroup once its processes are gone (waits up to ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        for folder in self.folders(name):
            while folder.exists():
                try:
                    folder.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def remove_parent(self) -> None:
        for root in dict.fromkeys(self.roots.values()):
            folder = root / self.parent
            if folder.is_dir():
                for child in folder.iterdir():
                    if child.is_dir():
                        child.rmdir()
                folder.rmdir()

    def probe(self) -> str | None:
        """None when limits can be enforced here, else why not."""
        if self.version == 0:
            return ("no cgroup hierarchy with a memory controller is mounted (neither cgroup v2 with memory and "
                    "cpu, nor v1's memory)")
        name = f"probe-{os.getpid()}"
        try:
            self.create(name, memory_bytes=256 << 20, cpus=1.0, pids=64)
            self.remove(name, wait=1.0)
        except OSError as exc:
            return f"cannot make a cgroup under {', '.join(str(r) for r in self.roots.values())}: {exc}"
        return None

    def enforces_memory(self, wait: float = 60.0) -> str | None:
        """None when a process over its cgroup's memory limit is stopped here (a child limited to 64 MiB
        allocates up to 512 MiB and must be killed), else what happened instead. A container may let
        root make cgroups that limit nothing."""
        if why := self.probe():
            return why
        name = f"probe-memory-{os.getpid()}"
        procs = self.create(name, memory_bytes=64 << 20, pids=64)
        hog = "blocks = []\nfor _ in range(16):\n    blocks.append(b'x' * (32 << 20))\nprint('survived')"
        try:
            child = subprocess.Popen([sys.executable, "-c", hog], preexec_fn=lambda: Cgroups.join(procs),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                out, _ = child.communicate(timeout=wait)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                return f"a process over a 64 MiB memory limit was neither stopped nor finished within {wait:.0f} s"
            if child.returncode != -signal.SIGKILL:
                return f"a process over a 64 MiB memory limit was not stopped (exit {child.returncode}, {out.strip()!r})"
            return None
        finally:
            self.remove(name, wait=5.0)

    @staticmethod
    def _enable(folder: Path) -> None:
        """Let ``folder``'s children have memory, cpu (and pids) limits (cgroup v2)."""
        have = set((folder / "cgroup.subtree_control").read_text().split())
        wanted = {"memory", "cpu"} | ({"pids"} & set((folder / "cgroup.controllers").read_text().split()))
        if not wanted <= have:
            (folder / "cgroup.subtree_control").write_text(" ".join("+" + c for c in sorted(wanted - have)))

    @staticmethod
    def _write(path: Path, value: str) -> None:
        path.write_text(value)

    @staticmethod
    def join(procs: list[Path]) -> None:
        """Move the calling process into the cgroup (a spawner's ``preexec_fn`` calls it, as root)."""
        pid = str(os.getpid())
        for path in procs:
            with open(path, "w") as f:
                f.write(pid)


class ClassHubSpawner(LocalProcessSpawner):
    """LocalProcessSpawner that makes each learner a system user on first start and runs their
    server in its own cgroup with ``mem_limit``, ``cpu_limit`` and ``pids_limit`` (when the hub
    could make cgroups: ``cgroups``; otherwise the limits are not enforced and the hub says so)."""

    home_root = Unicode("/home", config=True, help="where the homes of the users this hub makes go")
    user_comment = Unicode("rlhf-course hub", config=True,
                            help="the comment (GECOS) of the system users this hub makes: how they are told apart")
    instructors = Set(config=True, help="these users also join instructor_group")
    instructor_group = Unicode("", config=True, help="the group that may read solutions/")
    pids_limit = Integer(0, config=True, help="most processes and threads a server may run (0: no limit)")
    cgroups = Any(None, config=True, help="a Cgroups, or None when limits cannot be enforced")

    def _groups(self) -> tuple[str, ...]:
        return (self.instructor_group,) if self.instructor_group and self.user.name in self.instructors else ()

    async def start(self):
        made = ensure_system_user(self.user.name, Path(self.home_root), self.user_comment, self._groups())
        if made:
            self.log.info("rlhf-course hub: made system user %s (home %s/%s, mode 700)", self.user.name,
                          self.home_root, self.user.name)
        elif why := home_problem(self.user.name):
            self.log.warning("rlhf-course hub: %s: other users may read this learner's files", why)
        self._procs = []
        if self.cgroups is not None:
            self._procs = self.cgroups.create(self.user.name, int(self.mem_limit or 0), float(self.cpu_limit or 0),
                                              self.pids_limit)
        return await super().start()

    def make_preexec_fn(self, name):
        become_user = super().make_preexec_fn(name)
        procs = list(getattr(self, "_procs", []))

        def preexec():
            if procs:
                Cgroups.join(procs)
            become_user()

        return preexec

    async def stop(self, now=False):
        await super().stop(now=now)
        if self.cgroups is not None:
            try:  # at once: the hub does not wait; a cgroup still busy is reused, limits reset, at the next start
                self.cgroups.remove(self.user.name, wait=0)
            except OSError as exc:
                self.log.info("rlhf-course hub: %s's cgroup is still busy (%s); the next start reuses it",
                              self.user.name, exc)
