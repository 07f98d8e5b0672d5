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
requirements exclude each other (the newest openai is 3.x; llama-index-llms-openai and the
locked openai-agents cap it below 3).
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
# pyenv's shims answer `python3.10` only for the versions that are active (a shim that ran
# nox has set PYENV_VERSION to one of them): make them all active, the current one first
if shutil.which("pyenv"):

    def _pyenv(*args: str) -> list[str]:
        return subprocess.run(["pyenv", *args], capture_output=True, text=True).stdout.split()

    active = (
        os.environ.get("PYENV_VERSION", "").split(":") if os.environ.get("PYENV_VERSION") else []
    )
    active = active or _pyenv("version-name")
    installed = [v for v in _pyenv("versions", "--bare") if "/" not in v]
    os.environ["PYENV_VERSION"] = ":".join(active + [v for v in installed if v not in active])

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
    # upper bounds on what the install may pull in; unlike deps, they install nothing
    constraints: tuple[str, ...] = ()
    # extra pytest arguments (e.g. a test that needs what the cell cannot install)
    pytest_args: tuple[str, ...] = ()
    # environment variables of the cell's commands
    env: tuple[tuple[str, str], ...] = ()
    only: tuple[str, ...] = field(default=("floor", "newest"))


CELLS: dict[str, Cell] = {
    "core": Cell(
        extras=("local",),
        frameworks=("httpx", "orjson", "pydantic", "starlette", "uvicorn"),
        tests=("tests/core", "tests/transport", "tests/collector"),
        # the official client the schema test compares against: VoiceCall arrived in 1.3
        deps=("greenflash>=1.3",),
        # the viewer's browser tests run in the locked suite (they need Chromium + playwright)
        pytest_args=("--deselect", "tests/collector/test_viewer.py"),
    ),
    "langchain": Cell(
        extras=("langchain", "langgraph", "local"),  # local: the feedback tests' collector
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
        extras=("llamaindex", "local"),
        frameworks=("llama-index-core",),
        tests=("tests/llamaindex",),
        deps=(
            "llama-index-llms-openai>=0.3",
            "llama-index-llms-openai-like>=0.3",
            "llama-index-embeddings-openai>=0.3",
        ),
    ),
    "openai": Cell(
        extras=("openai", "local"),
        frameworks=("openai",),
        tests=("tests/openai",),
        # the frameworks over a wrapped client: their own cell (below), they need a newer openai
        pytest_args=("--ignore", "tests/openai/test_providers_openai.py"),
    ),
    # the OpenAI Agents SDK and LangChain's ChatOpenAI over a wrapped client, at their
    # newest releases (with the openai they resolve to)
    "openai-agents": Cell(
        extras=("openai", "langchain"),
        frameworks=("openai-agents", "langchain-openai", "openai"),
        tests=("tests/openai/test_providers_openai.py",),
        deps=("openai-agents>=0.20", "langchain-openai>=1.0"),
        only=("newest",),
    ),
    "anthropic": Cell(
        # local: the collector end-to-end test
        extras=("anthropic", "local"),
        frameworks=("anthropic",),
        tests=("tests/anthropic",),
        # AnthropicBedrock before anthropic 0.88 signs with boto3 (the SDK's bedrock extra
        # asks boto3>=1.28.57 at 0.40)
        deps=("boto3>=1.28.57",),
    ),
    "bedrock": Cell(
        extras=("bedrock", "local"),
        frameworks=("boto3", "botocore"),
        tests=("tests/bedrock",),
        # boto3 takes the newest botocore of its minor line: named here, the floor cell
        # gets botocore 1.34.116 too, the first with Converse (printed, not checked)
        deps=("botocore>=1.34.116",),
    ),
    "google": Cell(
        # local: the gf.rate test's collector
        extras=("google", "local"),
        frameworks=("google-genai",),
        tests=("tests/google_genai",),
    ),
    "otel": Cell(
        extras=("otel", "openai"),
        frameworks=("opentelemetry-api", "opentelemetry-sdk"),
        tests=("tests/otel/test_otel.py",),
        deps=(
            # at the floor, the lowest releases that accept opentelemetry 1.30: openai-v2
            # before 2.4 logs messages as events, so its tests skip there (test_otel.py)
            "opentelemetry-instrumentation-openai-v2>=2.0b0",
            "openinference-instrumentation-openai>=0.1.40",
            # the oldest client openinference-instrumentation-openai instruments
            "openai>=1.69",
            # the conventions opentelemetry-sdk 1.30 pins, named so that lowest-direct keeps
            # them (and with them the SDK) low instead of the newest pulling the SDK up
            "opentelemetry-semantic-conventions>=0.51b0",
        ),
        # openai-v2 2.4b0 imports opentelemetry.util.genai.instruments, gone in util-genai
        # 1.2; a constraint, since openai-v2 before 2.4 (the floor's) does not use it
        constraints=("opentelemetry-util-genai<1.2",),
    ),
    "litellm": Cell(
        # openai: the test of a wrapped OpenAI client handed to LiteLLM (litellm needs the
        # SDK anyway); no `local`: the tests send to the capture server, not the collector
        extras=("litellm", "openai"),
        frameworks=("litellm",),
        tests=("tests/litellm",),
        # LiteLLM fetches its price map from the network at import unless told not to
        env=(("LITELLM_LOCAL_MODEL_COST_MAP", "True"),),
    ),
    # cost estimates: the price table at its floor (Python 3.10 takes genai-prices 0.1.x
    # at most; 0.2 needs 3.11) and newest, through the wrappers over their fake servers
    # into the local collector
    "prices": Cell(
        extras=("prices", "openai", "anthropic", "local"),
        frameworks=("genai-prices",),
        tests=("tests/prices",),
    ),
    # the real AWS Lambda runtime interface client (Linux wheels only) running a function
    # with a wrapped OpenAI client, frozen after each response; the decorator and the
    # uploader's spool-now calls need nothing more
    "serverless": Cell(
        extras=("lambda", "openai"),
        frameworks=("awslambdaric",),
        tests=("tests/serverless", "tests/transport/test_spool_now.py"),
    ),
    # Pydantic AI over OTel: its newest release needs the newest openai, which the lock
    # (held below openai 3 by the Agents SDK) cannot have
    "pydantic-ai": Cell(
        extras=("otel", "openai"),
        frameworks=("pydantic-ai-slim", "openai"),
        tests=("tests/otel/test_pydantic_ai.py",),
        # the last test runs Pydantic AI over a client instrumented by openai-v2
        deps=("pydantic-ai-slim[openai]>=1.0", "opentelemetry-instrumentation-openai-v2>=2.4b0"),
        constraints=("opentelemetry-util-genai<1.2",),  # as in the otel cell
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


# prints the versions; in a floor cell, fails unless they are the declared floors
_CHECK = "tests/helpers/installed_versions.py"


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
    constraints = []
    if cell.constraints:
        path = Path(session.create_tmp()) / "constraints.txt"
        path.write_text("\n".join(cell.constraints) + "\n")
        constraints = ["--constraint", str(path)]
    session.install(*resolution, *constraints, "-e", spec, *cell.deps, *TEST_TOOLS)
    floors = _declared_floors() if bound == "floor" else {}
    session.log(f"{integration}-{bound} on Python {session.python}:")
    env = dict(cell.env)
    session.run("python", _CHECK, *[f"{n}={floors.get(n, '')}" for n in cell.frameworks], env=env)
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
        env=env,
    )
