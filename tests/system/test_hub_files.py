"""The files for a class beyond one machine (hub/): valid, and their commands are the kit's real ones.

Nothing here needs Docker, Kubernetes or Slurm: the manifests are checked against
Kubernetes' schemas (kubernetes-validate, strict), the Dockerfile is parsed
(dockerfile-parse), the Helm values and the hub's Python are parsed, the Slurm
script passes ``bash -n``, and every ``rlhf-course`` command they run is parsed
by the kit's own command line, so that none of them rots unnoticed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from autograder.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
HUB = REPO / "hub"
MANIFESTS = sorted((HUB / "k8s").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _rlhf_course_commands(text: str) -> list[list[str]]:
    """Every ``rlhf-course ...`` command in a shell text, with variables given example values."""
    text = text.replace("\\\n", " ")
    values = {"JOB_COMPLETION_INDEX": "0", "SLURM_ARRAY_TASK_ID": "0", "N": "4", "CLASS": "/class",
              "SLURM_CPUS_PER_TASK:-2": "2", "SLURM_CPUS_PER_TASK": "2"}
    text = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_:-]*)\}?", lambda m: values.get(m.group(1), "x"), text)
    commands = []
    for line in text.splitlines():
        line = line.split("#")[0] if not line.lstrip().startswith("#") else ""
        for part in re.split(r"&&|;|\|\|", line):
            words = shlex.split(part.replace('"', ""))
            if words[:1] == ["rlhf-course"]:
                commands.append(words[1:])
    return commands


def _parses(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse's way of saying no
        raise AssertionError(f"`rlhf-course {' '.join(args)}` is not a valid command") from exc


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(path):
    import kubernetes_validate

    for doc in _documents(path):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
        for container in (doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])):
            for command in _rlhf_course_commands(" ".join(container.get("args", []))):
                _parses(command)


def test_the_shards_and_the_merge_agree():
    job = _documents(HUB / "k8s" / "grade-shards.yaml")[0]
    n = job["spec"]["completions"]
    grade = _rlhf_course_commands(" ".join(job["spec"]["template"]["spec"]["containers"][0]["args"]))[0]
    assert grade[grade.index("--shard") + 1].endswith(f"/{n}"), "completions and --shard K/N must agree"
    merge = _rlhf_course_commands(" ".join(_documents(HUB / "k8s" / "merge.yaml")[0]["spec"]["template"]["spec"]
                                           ["containers"][0]["args"]))[0]
    assert [a for a in merge if a.startswith("/class/shards/")] == [f"/class/shards/{k}" for k in range(n)]


def test_slurm_script():
    script = HUB / "slurm" / "grade-shards.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    commands = _rlhf_course_commands(script.read_text())
    assert any(c[0] == "grade" and "--shard" in c for c in commands)
    for command in commands:
        _parses(command)


def test_dockerfile_builds_a_learner_image_without_the_answer_key():
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(HUB / "Dockerfile"))
    stage, copied = None, {}
    for item in parser.structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            image, stage = words[0], words[-1]
            assert ":" in image or stage == "grader", f"pin the base image: {image}"
            copied[stage] = []
        elif item["instruction"] == "COPY":
            sources = [w for w in item["value"].split()[:-1] if not w.startswith("--")]
            for src in sources:
                assert (REPO / src).exists(), f"the Dockerfile copies {src}, which the repository does not have"
            copied[stage] += sources
        elif item["instruction"] == "RUN":
            for command in _rlhf_course_commands(item["value"]):
                _parses(command)
    assert "solutions" not in copied["learner"], "the learners' image must not hold the answer key"
    assert "solutions" in copied["grader"]
    assert "requirements.lock" in copied["learner"], "the image installs the kit's pins"


def test_helm_values():
    """LTI 1.3 logins (the LMS's Instructor role makes an instructor), a uid of its own for every
    server, limits, and the idle culler."""
    values = yaml.safe_load((HUB / "z2jh" / "values.yaml").read_text())
    assert values["singleuser"]["image"]["name"].endswith("rlhf-course-learner")
    mounts = values["singleuser"]["storage"]["extraVolumeMounts"]
    assert any(m["mountPath"] == "/srv/nbgrader/exchange" for m in mounts)
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "ltiauthenticator.lti13.auth.LTI13Authenticator"
    assert {"issuer", "authorize_url", "jwks_endpoint", "client_id", "username_key"} <= set(config["LTI13Authenticator"])
    assert "SharedPasswordAuthenticator" not in config and "shared-password" not in str(values)
    assert values["singleuser"]["memory"]["limit"] and values["singleuser"]["cpu"]["limit"]
    assert values["cull"] == {"enabled": True, "timeout": 3600, "every": 300}
    for name, code in values["hub"]["extraConfig"].items():
        compile(code, name, "exec")  # the hub would refuse to start on a syntax error


def _hook_namespace(values: dict) -> dict:
    """The names the values' extraConfig defines, run against a stand-in config object."""
    from traitlets.config import Config

    namespace = {"c": Config()}
    for code in values["hub"]["extraConfig"].values():
        exec(code, namespace)
    return namespace


def test_helm_values_make_instructors_from_the_lms_role_and_give_each_server_its_uid():
    from types import SimpleNamespace

    ns = _hook_namespace(yaml.safe_load((HUB / "z2jh" / "values.yaml").read_text()))
    claim = "https://purl.imsglobal.org/spec/lti/claim/roles"
    teacher = ns["rlhf_course_instructor"](None, None, {"name": "lee", "auth_state": {claim: [
        "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"]}})
    learner = ns["rlhf_course_instructor"](None, None, {"name": "ann", "auth_state": {claim: [
        "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]}})
    assert teacher["admin"] is True and learner["admin"] is False
    spawners = {}
    for name, uid, admin in (("lee", 7, True), ("ann", 8, False)):
        spawner = SimpleNamespace(user=SimpleNamespace(admin=admin, id=uid), environment={},
                                  mem_limit="2G", cpu_limit=1)
        ns["rlhf_course_role"](spawner)
        spawners[name] = spawner
    assert (spawners["lee"].uid, spawners["ann"].uid) == (10007, 10008)
    assert spawners["lee"].supplemental_gids == [2000] and spawners["ann"].supplemental_gids == []
    assert spawners["ann"].environment["JUPYTER_CONFIG_DIR"] == "/etc/rlhf-course/learner"
    assert spawners["ann"].mem_limit == "2G" and spawners["lee"].mem_limit is None


def _load_config(tmp_path, **env):
    config = HUB / "jupyterhub_config.py"
    code = ("import sys; from traitlets.config import Config; c = Config(); "
            f"exec(open({str(config)!r}).read(), {{'get_config': lambda: c, '__file__': {str(config)!r}}})")
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "RLHF_HUB_DIR": str(tmp_path), "RLHF_HUB_USERS": "shared",
                               **env})


@pytest.mark.slow
def test_hub_config_compiles_and_refuses_to_start_without_a_roster(tmp_path):
    config = HUB / "jupyterhub_config.py"
    compile(config.read_text(), str(config), "exec")
    r = _load_config(tmp_path)
    assert r.returncode != 0 and "RLHF_HUB_ROSTER" in r.stderr and "RLHF_HUB_DEMO" in r.stderr
    (tmp_path / "roster.csv").write_text("id\nAnn Lee\n")
    r = _load_config(tmp_path, RLHF_HUB_ROSTER=str(tmp_path / "roster.csv"))
    assert r.returncode != 0 and "'Ann Lee' is not a usable student id" in r.stderr
    r = _load_config(tmp_path, RLHF_HUB_DEMO="1")
    assert r.returncode != 0 and "RLHF_HUB_PASSWORD" in r.stderr


def test_the_learner_defaults_are_set_by_one_command():
    """`make setup` and the hub's image both turn nbgrader's instructor tools off with
    `rlhf-course exchange learner-defaults`; the tools' names live in autograder/classhub/exchange.py only."""
    from autograder.classhub.exchange import INSTRUCTOR_EXTENSIONS, INSTRUCTOR_TOOLS

    for path in (REPO / "Makefile", HUB / "Dockerfile"):
        text = path.read_text()
        assert "rlhf-course exchange learner-defaults" in text, path
        assert not [name for name in INSTRUCTOR_TOOLS + INSTRUCTOR_EXTENSIONS if name in text], path
