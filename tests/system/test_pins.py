"""One set of versions for everyone: pyproject, environment.yml and the lock agree."""

import re
import tomllib

import yaml


def _pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)\s*", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_every_dependency_is_pinned_exactly(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps and all("==" in d for d in deps), [d for d in deps if "==" not in d]
    assert _pins(deps)["torch"] == "2.13.0"


def test_environment_yml_installs_the_same_pins(repo):
    deps = _pins(tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert _pins(pip_section) == deps
    assert "-r requirements.lock" in pip_section


def test_lock_agrees_with_pyproject(repo):
    deps = _pins(tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"])
    lock = _pins((repo / "requirements.lock").read_text().splitlines())
    for name, version in deps.items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"
    assert all("==" in line for line in (repo / "requirements.lock").read_text().splitlines()
               if line.strip() and not line.startswith("#"))
