"""The Dockerfile and .dockerignore, checked without a Docker engine: base image, non-root user,
a dependency layer that does not depend on the source, tests in the image, a Python healthcheck
on /-/healthy, the data volume, the serve command, and nothing copied that is ignored or missing."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from deploy_util import DOCKERFILE, DOCKERIGNORE, REPO, ServerProcess, child_env, free_port, start_server


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array form of the arguments (after any --flags), or None for shell form."""
        text = re.sub(r"^(--\S+\s+)+", "", self.args)
        if text.startswith("["):
            return list(json.loads(text))
        return None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments dropped."""
    out: list[Instruction] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        op, _, args = buf.partition(" ")
        out.append(Instruction(op.upper(), args.strip()))
        buf = ""
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _copies(instructions: list[Instruction]) -> list[tuple[int, list[str], str]]:
    """(index, sources, destination) of every COPY."""
    out = []
    for i, ins in enumerate(instructions):
        if ins.op == "COPY":
            parts = [p for p in shlex.split(ins.args) if not p.startswith("--")]
            out.append((i, parts[:-1], parts[-1]))
    return out


def _index(instructions: list[Instruction], op: str, contains: str = "") -> int:
    for i, ins in enumerate(instructions):
        if ins.op == op and contains in ins.args:
            return i
    raise AssertionError(f"no {op} containing {contains!r}")


def test_base_image(instructions: list[Instruction]) -> None:
    froms = [ins.args for ins in instructions if ins.op == "FROM"]
    assert froms == ["python:3.11-slim"]


def test_runs_as_a_non_root_user(instructions: list[Instruction]) -> None:
    users = [i for i, ins in enumerate(instructions) if ins.op == "USER"]
    assert users, "no USER instruction: the server would run as root"
    last = instructions[users[-1]].args.split(":")[0]
    assert last not in ("root", "0")
    assert users[-1] < _index(instructions, "CMD")


def test_dependency_layer_comes_before_the_source(instructions: list[Instruction]) -> None:
    copies = _copies(instructions)
    pyproject = next(i for i, srcs, _ in copies if srcs == ["pyproject.toml"])
    deps = _index(instructions, "RUN", "pip install -r")
    source = next(i for i, srcs, _ in copies if "tsdb" in srcs)
    assert pyproject < deps < source
    # Nothing but pyproject.toml is copied before the dependencies are installed.
    assert [srcs for i, srcs, _ in copies if i < deps] == [["pyproject.toml"]]


def test_requirements_command_lists_runtime_and_dev_dependencies(instructions: list[Instruction]) -> None:
    """Run the Dockerfile's own requirements one-liner against the real pyproject.toml."""
    run = instructions[_index(instructions, "RUN", "tomllib")].args
    code = re.search(r'python -c "([^"]+)"', run)
    assert code, run
    # Inside sh's double quotes a backslash before 'n' stays a backslash: python sees '\n'.
    out = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert out.splitlines() == expected
    assert any(req.startswith("pytest") for req in expected)  # `docker compose exec tsdb pytest`


def test_tests_are_in_the_image(instructions: list[Instruction]) -> None:
    sources = {s for _, srcs, _ in _copies(instructions) for s in srcs}
    assert {"tests", "tsdb", "pyproject.toml"} <= sources


def test_every_copied_path_exists_and_is_not_dockerignored(instructions: list[Instruction]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for _, sources, _ in _copies(instructions):
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: missing from the repository"
            hits = [p for p in patterns if fnmatch.fnmatch(src, p.removeprefix("**/"))]
            assert not hits, f"COPY {src} is excluded by .dockerignore {hits}"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = set(DOCKERIGNORE.read_text(encoding="utf-8").split())
    assert {".git", "data", ".hypothesis", ".pytest_cache", "**/__pycache__"} <= patterns


def test_data_volume_is_the_data_dir(instructions: list[Instruction]) -> None:
    env = {}
    for ins in instructions:
        if ins.op == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(ins.args)))
    volumes = [v for ins in instructions if ins.op == "VOLUME" for v in (ins.exec_form() or ins.args.split())]
    assert env["DATA_DIR"] in volumes


def test_serve_command_listens_on_all_interfaces(instructions: list[Instruction]) -> None:
    cmd = instructions[_index(instructions, "CMD")].exec_form()
    assert cmd is not None, "use the exec form so the server gets SIGTERM directly"
    assert cmd[:2] == ["tsdb", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("docker-hc"))
    yield server
    server.stop()


def test_healthcheck_is_python_probing_healthy(instructions: list[Instruction], live_server: ServerProcess) -> None:
    hc = instructions[_index(instructions, "HEALTHCHECK")]
    options = re.match(r"^((?:--\S+\s+)*)CMD\s+(\[.*\])$", hc.args)
    assert options, f"HEALTHCHECK [OPTIONS] CMD [exec form] expected, got {hc.args!r}"
    argv = json.loads(options.group(2))
    assert argv[0] == "python" and "curl" not in " ".join(argv)
    assert "/-/healthy" in " ".join(argv)
    probe = [sys.executable, *argv[1:]]
    port = live_server.url.rsplit(":", 1)[1]
    assert subprocess.run(probe, env=child_env(TSDB_PORT=port), capture_output=True, timeout=30).returncode == 0
    down = child_env(TSDB_PORT=str(free_port()))
    assert subprocess.run(probe, env=down, capture_output=True, timeout=30).returncode != 0
