"""Run a Jupyter kernel inside a bubblewrap sandbox.

The grader (nbgrader's ``Autograde`` converter, in a worker process that the
student never controls) talks to a kernel that runs the student's code. This
module puts that kernel, and only that kernel, in a box:

* **no network**: a fresh network namespace (``--unshare-all``); the grader
  reaches the kernel over Unix sockets (ZeroMQ ``ipc`` transport) in a folder
  bound into the box, so no TCP port is needed;
* **a private filesystem**: the Python installation, the virtual environment
  and the ``rlhf_helpers`` package are mounted read-only; the submission's own
  scratch copy is the only writable folder on disk (``/home/student/work``, the
  working directory); ``$HOME`` and ``/tmp`` are small in-memory scratch
  (Hugging Face caches, matplotlib's config). Other submissions, the
  gradebook, the instructor's sources (hidden tests) and the rest of the
  machine are simply not there;
* **limits**: an address-space cap (``RLIMIT_AS``, so a runaway allocation
  raises ``MemoryError`` or kills only this kernel), a file-size cap, no core
  dumps, all capabilities dropped, a new session (no terminal injection), and
  a new PID namespace that dies with the grader (``--die-with-parent``);
* **nothing of the grader**: the kernel runs as ``student`` (uid 1000) in a user
  namespace of its own, and is PID 1 of its PID namespace, so ``/proc`` shows
  only the kernel and what it starts (no launcher with the grader's command line
  or environment); its environment is :func:`sandbox_env`, nothing else.

Time limits are the grader's job (per-cell timeouts and a per-submission
budget, see :mod:`autograder.grading.preprocessors`). What the box does not hold:
the graded lab's answer key (:mod:`autograder.grading.answer_key`).

The kernelspec written by :func:`write_kernelspec` starts
``python -m autograder.grading.sandbox -f {connection_file}``; that launcher reads the
per-submission settings from the JSON file named by ``$RLHF_SANDBOX_CONFIG``
(written by the worker), sets the resource limits and ``exec``s ``bwrap``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONFIG_ENV = "RLHF_SANDBOX_CONFIG"
KERNEL_NAME = "rlhf-sandbox"
SANDBOX_HOME = "/home/student"
SANDBOX_WORK = "/home/student/work"
ARM = ["--IPKernelApp.extensions=['rlhf_helpers.observations']"]
"""The kernel arms the tripwires as it starts, before any learner cell (rlhf_helpers.observations.arm)."""
SANDBOX_UID = 1000
"""The kernel's user and group id inside the box (an unprivileged user of its own user namespace)."""
INSTALL_HINT = (
    "bubblewrap (`bwrap`) is needed to grade safely. Install it with "
    "`apt-get install bubblewrap` (Debian/Ubuntu; `make system-deps` does it), "
    "or pass --no-sandbox to grade WITHOUT isolation (only for your own notebooks)."
)

# Read-only system files a Python kernel needs (when present).
_ETC_FILES = [
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
    "/etc/nsswitch.conf", "/etc/hosts", "/etc/localtime", "/etc/mime.types", "/etc/fonts",
    "/etc/alternatives",
]


@dataclass
class SandboxConfig:
    """Everything the launcher needs to box one kernel (one submission)."""

    work_dir: str = field(metadata={"help": "the submission's scratch copy, mounted read-write as the working directory"})
    ipc_dir: str = field(metadata={"help": "folder with the connection file and ZeroMQ sockets, bound at the same path"})
    log_path: str = field(default="", metadata={"help": "file for the kernel's own stdout/stderr; outside every bound folder"})
    memory_mb: int | None = field(default=None, metadata={
        "help": "address-space cap of the kernel, MiB (the grader passes Settings.memory_mb); None: no cap"})
    file_size_mb: int = field(default=512, metadata={"help": "largest file the kernel may write, MiB"})
    tmpfs_mb: int = field(default=512, metadata={"help": "size of each in-memory scratch (/tmp, $HOME), MiB"})
    threads: int = field(default=1, metadata={"help": "OMP/MKL threads per kernel (cores / parallel jobs)"})
    ro_paths: list[str] = field(default_factory=list, metadata={"help": "extra folders mounted read-only at the same path"})
    overlays: list[list[str]] = field(default_factory=list, metadata={
        "help": "[source, target] pairs mounted read-only after everything else: source is seen at target "
                "(the helper package without the graded lab's answer key, see autograder.grading.answer_key)"})
    env: dict[str, str] = field(default_factory=dict, metadata={"help": "extra environment variables"})
    enabled: bool = field(default=True, metadata={"help": "False runs the kernel unboxed (--no-sandbox)"})
    hide: list[str] = field(default_factory=list, metadata={
        "help": "folders to cover with an empty read-only tmpfs when a read-only mount would show them "
                "(the class's submissions, the grading folder, the kit's solutions/ when they lie under /usr or /opt)"})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str) -> "SandboxConfig":
        data = json.loads(Path(path).read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sandbox settings {sorted(unknown)} in {path}")
        return cls(**data)


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or None when bubblewrap is not installed."""
    return shutil.which("bwrap")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot build the sandbox on this machine."""


_PROBE: dict[str, str | None] = {}


def probe() -> str | None:
    """None when bubblewrap can build the sandbox on this machine, else why not
    (with what to do). The answer is cached for the process."""
    if "result" in _PROBE:
        return _PROBE["result"]
    import subprocess
    import tempfile

    if bwrap_path() is None:
        result = INSTALL_HINT
    else:
        with tempfile.TemporaryDirectory(prefix="rg-probe-") as tmp:
            cfg = SandboxConfig(work_dir=tmp, ipc_dir=tmp)
            try:
                run = subprocess.run(bwrap_command(cfg, ["/bin/sh", "-c", "true"]), capture_output=True, text=True, timeout=60)
                result = None if run.returncode == 0 else (
                    f"bubblewrap is installed but cannot build the sandbox here: {run.stderr.strip() or run.returncode}. "
                    "It needs user namespaces (as root, or with kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 "
                    "also kernel.apparmor_restrict_unprivileged_userns=0), or pass --no-sandbox to grade WITHOUT isolation.")
            except (OSError, subprocess.TimeoutExpired) as exc:
                result = f"bubblewrap could not be run ({exc})"
    _PROBE["result"] = result
    return result


def default_ro_paths() -> list[str]:
    """Folders the kernel must read: Python itself, the venv, the helper package and its world."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), sys.prefix}
    try:
        import rlhf_helpers
        from rlhf_helpers.config import tiny_world_dir

        paths.add(str(Path(rlhf_helpers.__file__).resolve().parent))
        paths.add(str(tiny_world_dir().resolve()))
    except ImportError:  # the grader can grade labs that do not use the helpers
        pass
    # Drop paths nested in another one (bwrap would mount them twice).
    ordered = sorted(p for p in paths if os.path.exists(p))
    return [p for p in ordered if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in ordered)]


def sandbox_env(cfg: SandboxConfig) -> dict[str, str]:
    """The kernel's whole environment (nothing else leaks in from the grader's)."""
    venv_bin = os.path.join(sys.prefix, "bin")
    threads = str(max(1, cfg.threads))
    env = {
        "HOME": SANDBOX_HOME,
        "USER": "student",
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "HF_HOME": "/tmp/hf",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "XDG_CACHE_HOME": "/tmp/cache",
        "XDG_CONFIG_HOME": "/tmp/config",
        "IPYTHONDIR": "/tmp/ipython",
        "JUPYTER_CONFIG_DIR": "/tmp/jupyter",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "RLHF_COURSE_WORKERS": threads,  # runs side by side (rlhf_helpers.parallel): the kernel's share of the cores
        "NBGRADER_EXECUTION": "autograde",
        "RLHF_COURSE_OBSERVE": "1",  # test cells report what they observe; the grader judges (autograder.grading.judge)
    }
    for key in ("RLHF_COURSE_PROFILE", "RLHF_COURSE_WORLD"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env.update(cfg.env)
    return env


def bwrap_command(cfg: SandboxConfig, inner: list[str], identity: dict[str, Path] | None = None) -> list[str]:
    """The full ``bwrap ...  -- inner`` command line for one kernel (``identity``: the box's own
    ``passwd`` and ``group`` files, see :func:`write_identity`)."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise FileNotFoundError(INSTALL_HINT)
    # A user namespace of its own, in which the kernel is an unprivileged user (uid 1000, no
    # capabilities), and PID 1 of its own PID namespace: no reaper started with bwrap's command
    # line and environment, so /proc shows the kernel and its children only.
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
           "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
           "--clearenv"]
    # The scratch file systems come first: a bind below would be hidden under a tmpfs
    # mounted after it (a kit cloned under /tmp would lose its venv inside the box).
    size = str(cfg.tmpfs_mb * 2**20)
    cmd += ["--dev", "/dev", "--proc", "/proc",
            "--size", size, "--tmpfs", "/tmp",
            "--size", size, "--tmpfs", SANDBOX_HOME]
    for top in ("/usr", "/opt"):
        if os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    for link in ("/bin", "/lib", "/lib64", "/sbin", "/lib32", "/libx32"):
        if os.path.islink(link):
            cmd += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", link, link]
    for etc in _ETC_FILES:
        if os.path.exists(etc):
            cmd += ["--ro-bind", etc, etc]
    for name, path in (identity or {}).items():  # the box's own user: student, uid 1000
        cmd += ["--ro-bind", str(path), f"/etc/{name}"]
    for path in default_ro_paths() + list(cfg.ro_paths):
        if not path.startswith(("/usr/", "/opt/")):
            cmd += ["--ro-bind", path, path]
    for source, target in cfg.overlays:  # later mounts hide what is below them
        cmd += ["--ro-bind", source, target]
    shown = [os.path.realpath(p) for p in ("/usr", "/opt", *default_ro_paths(), *cfg.ro_paths) if os.path.exists(p)]
    for path in cfg.hide:
        real = os.path.realpath(path)
        if os.path.isdir(real) and any(_inside(real, top) for top in shown):
            cmd += ["--tmpfs", real, "--remount-ro", real]
    cmd += ["--bind", cfg.work_dir, SANDBOX_WORK,
            "--bind", cfg.ipc_dir, cfg.ipc_dir,
            "--chdir", SANDBOX_WORK]
    for key, value in sandbox_env(cfg).items():
        cmd += ["--setenv", key, value]
    return cmd + ["--"] + inner


def write_identity(folder: Path) -> dict[str, Path]:
    """``passwd`` and ``group`` files that name the box's one user, ``student`` (uid and gid
    :data:`SANDBOX_UID`), written to ``folder`` (outside every folder bound into the box)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"passwd": f"student:x:{SANDBOX_UID}:{SANDBOX_UID}:student:{SANDBOX_HOME}:/bin/sh\n"
                       "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
             "group": f"student:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"}
    out = {}
    for name, text in files.items():
        path = folder / name
        path.write_text(text)
        out[name] = path
    return out


def set_limits(cfg: SandboxConfig) -> None:
    """Resource limits inherited by the sandboxed kernel and everything it starts."""
    if cfg.memory_mb is not None:
        mem = cfg.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = cfg.file_size_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def write_kernelspec(share_dir: Path) -> Path:
    """Write the ``rlhf-sandbox`` kernelspec under ``share_dir/kernels`` (put
    ``share_dir`` on ``$JUPYTER_PATH``). Interrupts are sent as messages: a
    signal to ``bwrap`` would not reach the kernel inside."""
    kdir = share_dir / "kernels" / KERNEL_NAME
    kdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "autograder.grading.sandbox", "-f", "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }
    (kdir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kdir


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def launch(argv: list[str]) -> None:
    """Kernel launcher (``python -m autograder.grading.sandbox -f CONNECTION_FILE [ARGS]``): never returns.
    ARGS (extra kernel arguments from the kernel manager) are passed on to ipykernel."""
    if len(argv) < 2 or argv[0] != "-f":
        raise SystemExit("usage: python -m autograder.grading.sandbox -f CONNECTION_FILE [KERNEL_ARGS...]")
    cfg_path = os.environ.get(CONFIG_ENV)
    if not cfg_path:
        raise SystemExit(f"${CONFIG_ENV} is not set: this launcher is started by the grader, not by hand")
    cfg = SandboxConfig.load(cfg_path)
    # The kernel's own stdout/stderr (not the notebook's outputs) go to a log the grader reads.
    # This file and the config must live outside the folders bound into the box: a kernel
    # that could rewrite them would be launched unboxed after its next restart.
    for path in (cfg_path, cfg.log_path):
        if path and any(_inside(path, bound) for bound in (cfg.work_dir, cfg.ipc_dir)):
            raise SystemExit(f"refusing to start: {path} is inside a folder the sandbox can write")
    log_fd = os.open(cfg.log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    extra = [a for a in argv[2:] if a != "--HistoryManager.hist_file=:memory:"]
    inner = [sys.executable, "-m", "ipykernel_launcher", "-f", argv[1], "--HistoryManager.hist_file=:memory:",
             *ARM, *extra]
    if not cfg.enabled:  # --no-sandbox: same limits and environment, no box
        set_limits(cfg)
        env = sandbox_env(cfg)
        env["HOME"] = cfg.work_dir
        for key in ("HF_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "IPYTHONDIR", "JUPYTER_CONFIG_DIR"):
            env[key] = os.path.join(cfg.work_dir, ".scratch", key.lower())
        os.chdir(cfg.work_dir)
        os.execve(sys.executable, inner, env)
    cmd = bwrap_command(cfg, inner, write_identity(Path(cfg_path).resolve().parent / "identity"))
    set_limits(cfg)
    os.execve(cmd[0], cmd, {"PATH": "/usr/bin:/bin"})  # nothing of the grader's environment, even in bwrap


if __name__ == "__main__":
    launch(sys.argv[1:])
