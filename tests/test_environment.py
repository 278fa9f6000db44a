"""pyproject.toml and environment.yml must list the same dependencies."""
import re
import tomllib

import yaml

from rlhf_lab.config import PROJECT_ROOT


def _name_and_spec(req: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(map(_name_and_spec, project["dependencies"] + project["optional-dependencies"]["dev"]))
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = dict(_name_and_spec(r) for r in pip_section if not r.startswith("-e"))
    assert listed == wanted, (
        "environment.yml and pyproject.toml disagree: "
        f"only in pyproject: {sorted(set(wanted.items()) - set(listed.items()))}; "
        f"only in environment.yml: {sorted(set(listed.items()) - set(wanted.items()))}")
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace("python", "") == project["requires-python"]


def test_no_exact_torch_pin():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if r.startswith("torch"))
    assert "==" not in torch_req, "learners elsewhere must not be pinned to one torch version"
