"""The support matrix: each integration at its declared floor and at the newest releases.

``make matrix`` (or ``.venv-tools/bin/nox``) runs every cell; ``nox -s "tests(openai-floor)"``
one. A ``floor`` cell runs on the oldest Python we support and installs every direct
requirement at the lowest version its specifier allows (``--resolution lowest-direct``):
the integration's framework, our own core dependencies and the test tools. It then checks
that the framework really is the floor that ``pyproject.toml`` declares, so the declared
support is what is tested. A ``newest`` cell runs on the newest Python and resolves at run
time, so a new upstream release that breaks us fails here first.

The locked suite (``make test``) is separate: it runs every test on the versions in
``uv.lock``. Cells exist for what one lock cannot hold: floors, and newest releases whose
requirements exclude each other (the newest openai is 3.x; the Agents SDK and
llama-index-llms-openai still cap it below 3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nox
import tomllib

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_venv = "no"
# use the machine's interpreters; never download one
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
# pyenv's shims answer `python3.10` only for the versions that are active: make them all so
if shutil.which("pyenv") and "PYENV_VERSION" not in os.environ:

    def _pyenv(*args: str) -> list[str]:
        return subprocess.run(["pyenv", *args], capture_output=True, text=True).stdout.split()

    current = _pyenv("version-name")  # stays what plain `python` means
    installed = [v for v in _pyenv("versions", "--bare") if "/" not in v]
    os.environ["PYENV_VERSION"] = ":".join(current + [v for v in installed if v not in current])

ROOT = Path(__file__).parent
FLOOR_PYTHON = "3.10"
NEWEST_PYTHON = "3.13"
TEST_TOOLS = ["pytest>=8", "pytest-timeout>=2.3"]


@dataclass(frozen=True)
class Cell:
    """One integration's test environment: what to install and which tests to run."""

    extras: tuple[str, ...]
    # the packages whose floor is declared by our extras and checked in the floor cell
    frameworks: tuple[str, ...]
    tests: tuple[str, ...]
    # provider classes and instrumentors the tests drive (their own floors: see README)
    deps: tuple[str, ...] = ()
    # extra pytest arguments (e.g. a test that needs what the cell cannot install)
    pytest_args: tuple[str, ...] = ()
    only: tuple[str, ...] = field(default=("floor", "newest"))


CELLS: dict[str, Cell] = {
    "core": Cell(
        extras=("local",),
        frameworks=("httpx", "orjson", "pydantic"),
        tests=("tests/core", "tests/transport", "tests/collector"),
        deps=("greenflash>=1.0",),
        # the viewer's browser tests run in the locked suite (they need Chromium + playwright)
        pytest_args=("--deselect", "tests/collector/test_viewer.py"),
    ),
    "langchain": Cell(
        extras=("langchain", "langgraph"),
        frameworks=("langchain-core", "langgraph"),
        tests=("tests/langchain",),
        deps=(
            "langchain>=1.0",
            "langchain-openai>=1.0",
            "langchain-anthropic>=1.0",
            # langgraph 1.0 allows langgraph-prebuilt <1.1, but prebuilt 1.0.9+ imports
            # langgraph.runtime.ExecutionInfo (langgraph 1.1): as a direct requirement the
            # floor cell gets prebuilt 1.0.0, the release that came with langgraph 1.0.0
            "langgraph-prebuilt>=1.0",
            # InMemoryVectorStore's cosine similarity (the retrieval test)
            "numpy>=1.26",
        ),
    ),
    "llamaindex": Cell(
        extras=("llamaindex",),
        frameworks=("llama-index-core",),
        tests=("tests/llamaindex",),
        deps=(
            "llama-index-llms-openai>=0.3",
            "llama-index-llms-openai-like>=0.3",
            "llama-index-embeddings-openai>=0.3",
        ),
    ),
    "openai": Cell(
        extras=("openai",),
        frameworks=("openai",),
        tests=("tests/openai",),
    ),
    "anthropic": Cell(
        extras=("anthropic",),
        frameworks=("anthropic",),
        tests=("tests/anthropic",),
    ),
    "otel": Cell(
        extras=("otel", "openai"),
        frameworks=("opentelemetry-api", "opentelemetry-sdk"),
        tests=("tests/otel/test_otel.py",),
        deps=(
            "opentelemetry-instrumentation-openai-v2>=2.0b0",
            # openai-v2 2.4b0 imports opentelemetry.util.genai.instruments, gone in 1.2
            "opentelemetry-util-genai>=1.0b0,<1.2",
            "openinference-instrumentation-openai>=0.1.40",
        ),
    ),
    # Pydantic AI over OTel: its newest release needs the newest openai, which the lock
    # (held below openai 3 by the Agents SDK) cannot have
    "pydantic-ai": Cell(
        extras=("otel", "openai"),
        frameworks=("pydantic-ai-slim",),
        tests=("tests/otel/test_pydantic_ai.py",),
        deps=("pydantic-ai-slim[openai]>=1.0",),
        only=("newest",),
    ),
}


def _declared_floors() -> dict[str, str]:
    """``{package: lowest version}`` from the ``>=`` specifiers of our own requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors: dict[str, str] = {}
    requirements = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in ("all", "dev"):
            requirements += reqs
    for req in requirements:
        name, sep, version = req.partition(">=")
        if sep:
            floors[name.strip()] = version.split(",")[0].strip()
    return floors


_CHECK = """
import importlib.metadata as md, sys
want = dict(arg.split("=", 1) for arg in sys.argv[1:])
bad = []
for name, floor in want.items():
    have = md.version(name)
    print(f"  {name} {have}" + ("" if not floor else f" (declared floor {floor})"))
    if floor and tuple(int(p) for p in have.split(".")[:3] if p.isdigit()) != tuple(
        int(p) for p in floor.split(".") if p.isdigit()
    ) + (0,) * (3 - len(floor.split("."))):
        bad.append(f"{name}: installed {have}, declared floor {floor}")
if bad:
    sys.exit("the floor cell did not install the declared floors: " + "; ".join(bad))
"""


def _cells() -> list[tuple[str, str, str]]:
    return [
        (FLOOR_PYTHON if bound == "floor" else NEWEST_PYTHON, name, bound)
        for name, cell in CELLS.items()
        for bound in cell.only
    ]


@nox.session
@nox.parametrize(
    ("python", "integration", "bound"), _cells(), ids=[f"{n}-{b}" for _, n, b in _cells()]
)
def tests(session: nox.Session, integration: str, bound: str) -> None:
    """One cell of the support matrix."""
    cell = CELLS[integration]
    spec = f".[{','.join(cell.extras)}]" if cell.extras else "."
    resolution = (
        ["--resolution", "lowest-direct"] if bound == "floor" else ["--upgrade", "--refresh"]
    )
    session.install(*resolution, "-e", spec, *cell.deps, *TEST_TOOLS)
    floors = _declared_floors() if bound == "floor" else {}
    session.log(f"{integration}-{bound} on Python {session.python}:")
    session.run("python", "-c", _CHECK, *[f"{n}={floors.get(n, '')}" for n in cell.frameworks])
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *cell.tests,
        *cell.pytest_args,
        *session.posargs,
    )
