"""The floors of docs/DESIGN.md section 2, checked on the source: a module imports only
from its own floor and the floors below it, and ``import gf_integrations`` imports no
framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "gf_integrations"

# bottom to top (the side, collector and cli, may use anything)
INTEGRATIONS = {
    "faas",
    "langchain",
    "llamaindex",
    "openai",
    "anthropic",
    "bedrock",
    "google_genai",
    "litellm",
    "otel",
}
SIDE = {"collector", "cli"}
# the wire format and its one reading as a tree share the schema's floor
WIRE_FORMAT = {"schema", "transcript"}
FACE = {"__init__", "feedback", "testing", "notebook", "py"}
# floors that share a level: schema and transport know nothing of each other
LEVEL = {"common": 0, "schema": 1, "transport": 1, "core": 2, "client": 3, "kit": 4}


def floor_of(parts: tuple[str, ...]) -> str:
    top = parts[0]
    if top in INTEGRATIONS:
        return "integrations"
    if top in SIDE:
        return "side"
    if top in WIRE_FORMAT:
        return "schema"
    if top in FACE:
        return "face"
    return top


def level(floor: str) -> int:
    return LEVEL.get(floor, {"integrations": 5, "face": 6, "side": 7}.get(floor, 99))


def our_imports(path: Path) -> list[tuple[str, ...]]:
    """The ``gf_integrations`` modules ``path`` imports, as path parts under the package."""
    here = path.relative_to(SRC).with_suffix("").parts
    package = here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = (*base, *(node.module or "").split(".")) if node.module else base
                names = [(*target, a.name) for a in node.names] if not node.module else [target]
                found += [tuple(p for p in t if p) for t in names]
            elif (node.module or "").startswith("gf_integrations."):
                found.append(tuple(node.module.split(".")[1:]))
    return [f for f in found if f]


def test_every_import_points_down_or_sideways_within_a_floor() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("").parts
        mine = floor_of(rel)
        for target in our_imports(path):
            theirs = floor_of(target)
            if mine == "side" or theirs == mine:
                continue
            if mine == "integrations" and theirs == "integrations":
                continue
            if level(theirs) > level(mine) or (level(theirs) == level(mine) and theirs != mine):
                wrong.append(f"{'/'.join(rel)} ({mine}) imports {'.'.join(target)} ({theirs})")
    assert wrong == []


def test_no_integration_imports_another() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("").parts
        if rel[0] not in INTEGRATIONS:
            continue
        for target in our_imports(path):
            if target[0] in INTEGRATIONS and target[0] != rel[0]:
                wrong.append(f"{'/'.join(rel)} imports {'.'.join(target)}")
    assert wrong == []


def test_importing_the_package_imports_no_framework() -> None:
    code = (
        "import sys, gf_integrations, gf_integrations.kit\n"
        "bad = [m for m in ('langchain_core', 'llama_index', 'openai', 'anthropic', "
        "'opentelemetry', 'langgraph', 'boto3', 'botocore', 'litellm', 'google.genai', "
        "'genai_prices', "
        "'awslambdaric', 'runtime_client', 'gf_integrations.faas') "
        "if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC.parent)},
    )
    assert out.stdout.strip() == "[]"
