"""The class hub's parts, without a hub: the roster, cgroup limits on a made-up cgroup tree, the
memory notice, the learners' exchange settings. tests/system/test_hub.py runs them in a real hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.classhub import exchange, memory_notice
from autograder.classhub.exchange import read_roster
from autograder.classhub.hub import Cgroups


def test_a_roster_is_nbgraders_student_csv(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("id,first_name,last_name,email\nann,Ann,Lee,ann@example.org\nbob,,,\n")
    students = read_roster(roster)
    assert [s.id for s in students] == ["ann", "bob"]
    assert students[0].email == "ann@example.org" and students[1].first_name == ""


@pytest.mark.parametrize("text, problem", [
    ("name\nann\n", "needs a header line with an 'id' column"),
    ("id\nAnn\n", "'Ann' is not a usable student id"),
    ("id\nann\nann\n", "line 3: 'ann' is listed twice"),
    ("id\nann smith\n", "'ann smith' is not a usable student id"),
    ("id\n", "lists no students"),
])
def test_a_roster_with_a_mistake_is_refused_saying_where(tmp_path, text, problem):
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    with pytest.raises(ValueError, match=problem):
        read_roster(roster)


def _fake_tree(tmp_path: Path, version: int) -> tuple[Path, Path]:
    """A cgroup tree in a plain folder, and the mount table that names it."""
    root = tmp_path / "cgroup"
    if version == 2:
        root.mkdir()
        (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (root / "cgroup.subtree_control").write_text("memory\n")
        mounts = f"cgroup2 {root} cgroup2 rw,nosuid 0 0\n"
    else:
        for c in ("memory", "cpu", "pids"):
            (root / c).mkdir(parents=True)
        mounts = "".join(f"cgroup {root / c} cgroup rw,{c} 0 0\n" for c in ("memory", "cpu", "pids"))
        mounts += f"cgroup2 {root / 'unified'} cgroup2 rw 0 0\n"  # v2 without controllers (hybrid): not used
    table = tmp_path / "mounts"
    table.write_text(mounts)
    return root, table


def test_cgroup_v2_limits_are_written_where_the_kernel_reads_them(tmp_path):
    root, table = _fake_tree(tmp_path, 2)
    cgroups = Cgroups("rlhf-hub-x", mounts=table)
    assert cgroups.version == 2
    (root / "rlhf-hub-x").mkdir()  # a real cgroup folder comes with these files; a plain one does not
    for name in ("cgroup.subtree_control", "cgroup.controllers"):
        (root / "rlhf-hub-x" / name).write_text("cpu memory pids\n" if name == "cgroup.controllers" else "")
    procs = cgroups.create("ann", memory_bytes=2 << 30, cpus=1.5, pids=512)
    ann = root / "rlhf-hub-x" / "ann"
    assert procs == [ann / "cgroup.procs"]
    assert (ann / "memory.max").read_text() == str(2 << 30)
    assert (ann / "cpu.max").read_text() == "150000 100000"
    assert "+cpu" in (root / "cgroup.subtree_control").read_text()
    assert set((root / "rlhf-hub-x" / "cgroup.subtree_control").read_text().replace("+", "").split()) == \
        {"cpu", "memory", "pids"}


def test_cgroup_v1_limits_go_to_each_controller(tmp_path):
    root, table = _fake_tree(tmp_path, 1)
    cgroups = Cgroups("rlhf-hub-x", mounts=table)
    assert cgroups.version == 1
    procs = cgroups.create("ann", memory_bytes=1 << 30, cpus=0.5, pids=100)
    assert sorted(procs) == sorted(root / c / "rlhf-hub-x" / "ann" / "cgroup.procs" for c in ("memory", "cpu", "pids"))
    assert (root / "memory" / "rlhf-hub-x" / "ann" / "memory.limit_in_bytes").read_text() == str(1 << 30)
    assert (root / "cpu" / "rlhf-hub-x" / "ann" / "cpu.cfs_quota_us").read_text() == "50000"
    assert (root / "pids" / "rlhf-hub-x" / "ann" / "pids.max").read_text() == "100"


def test_no_memory_controller_means_no_limits_and_says_why(tmp_path):
    table = tmp_path / "mounts"
    table.write_text("proc /proc proc rw 0 0\n")
    cgroups = Cgroups("rlhf-hub-x", mounts=table)
    assert cgroups.version == 0
    assert "no cgroup hierarchy with a memory controller" in cgroups.probe()


@pytest.mark.parametrize("version", [1, 2])
def test_the_memory_notice_counts_kills_since_the_last_kernel(tmp_path, version):
    root = tmp_path / "cgroup"
    if version == 2:
        folder, name, proc = root / "hub" / "ann", "memory.events", "0::/hub/ann\n"
        text = "low 0\nhigh 0\nmax 3\noom 1\noom_kill {}\n"
    else:
        folder, name, proc = root / "memory" / "hub" / "ann", "memory.oom_control", "4:memory:/hub/ann\n1:cpu:/hub/ann\n"
        text = "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"
    folder.mkdir(parents=True)
    cgroup = tmp_path / "self-cgroup"
    cgroup.write_text(proc)
    state = tmp_path / "home" / "memory.json"

    def started(kills: int) -> int:
        (folder / name).write_text(text.format(kills))
        return memory_notice.kills_since_last_start(cgroup, root, state)

    assert started(0) == 0, "the first kernel of a server has nothing to say"
    assert started(1) == 1, "a kernel after a kill says so"
    assert started(1) == 0, "... once"
    assert json.loads(state.read_text())["kills"] == 1
    cgroup.write_text("0::/\n")
    assert memory_notice.kills_since_last_start(cgroup, tmp_path / "nowhere", state) == 0


def test_the_memory_notice_names_the_limit(monkeypatch):
    monkeypatch.setenv("MEM_LIMIT", str(2 << 30))
    assert "memory limit of 2.0 GiB" in memory_notice.MESSAGE.format(limit=memory_notice._limit_text())


def test_the_learners_config_keeps_submissions_private_and_kernels_told(tmp_path):
    folder = exchange.write_role_config(tmp_path / "learner", "learner", tmp_path / "exchange")
    config = (folder / "nbgrader_config.py").read_text()
    assert "c.ExchangeFactory.submit = 'autograder.classhub.exchange.PrivateSubmit'" in config
    assert exchange.PrivateSubmit.__mro__[1].__name__ == "ExchangeSubmit"
    kernel = json.loads((folder / "data" / "kernels" / "python3" / "kernel.json").read_text())
    assert "--InteractiveShellApp.extensions=autograder.classhub.memory_notice" in kernel["argv"]
    assert (folder / "migrated").is_file(), "jupyter_core would try to write it into the shared folder"
