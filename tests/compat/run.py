"""``make compat``: langchain-core's own unit suite, bare and with our instrumentation.

Usage::

    .venv/bin/python tests/compat/run.py [--workers 2] [--floor]

1. Downloads the sdist of the langchain-core installed in this environment (with
   ``--floor``: of the floor our ``langchain`` extra declares) from the package index (it
   ships ``tests/unit_tests``) into ``.compat/`` and unpacks it (cached).
2. Creates ``.venv-compat-<version>`` with uv (cached) holding that langchain-core, the
   sdist's own ``test`` dependency group (minus benchmark/watch tools) and this package, so
   the main dev environment stays lean.
3. Runs the unit suite twice with ``-n <workers>`` and the suite's own socket guard:
   bare, then with ``tests/compat/plugin.py`` (``instrument()`` globally, in-memory exporter).
4. Compares per-test outcomes and exits 1 if a test fails only with our instrumentation
   (apart from ``plugin.ALLOWLIST``), if our plugin recorded nothing, or if our counters
   show dropped events or failed mappings. Prints both runs' counts and times, our
   counters and every warning our loggers emitted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = ROOT / ".compat"
PACKAGE = "langchain-core"
# not needed to run the unit tests (benchmarks are skipped, nothing is watched)
SKIPPED_TEST_DEPS = ("pytest-benchmark", "pytest-codspeed", "pytest-watcher")
BENCHMARKS = "tests/unit_tests/language_models/chat_models/test_benchmark.py"

sys.path.insert(0, str(HERE))
from plugin import ALLOWLIST  # noqa: E402


def _run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def fetch_sdist(version: str) -> Path:
    """The unpacked sdist of ``PACKAGE==version`` (downloaded once)."""
    source = CACHE / f"langchain_core-{version}"
    if (source / "tests" / "unit_tests").is_dir():
        return source
    CACHE.mkdir(exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    _run([*pip, f"{PACKAGE}=={version}", "-d", str(CACHE)])
    (archive,) = CACHE.glob(f"langchain_core-{version}.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return source


def make_venv(source: Path, version: str) -> Path:
    """``.venv-compat-<version>`` with the suite's test dependencies (installed once)."""
    venv = ROOT / f".venv-compat-{version}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists():
        return python
    _run(["uv", "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)])
    groups = tomllib.loads((source / "pyproject.toml").read_text())["dependency-groups"]
    deps = [d for d in groups["test"] if not d.startswith(SKIPPED_TEST_DEPS)]
    pin = f"{PACKAGE}=={version}"
    _run(["uv", "pip", "install", "-q", "--python", str(python), pin, *deps, "-e", str(ROOT)])
    stamp.touch()
    return python


def declared_floor() -> str:
    """The langchain-core floor of our ``langchain`` extra, as a full release number."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in extras["optional-dependencies"]["langchain"]:
        name, _, floor = req.partition(">=")
        if name.strip() == PACKAGE:
            parts = floor.split(",")[0].strip().split(".")
            return ".".join(parts + ["0"] * (3 - len(parts)))
    raise SystemExit(f"no {PACKAGE}>= floor in the langchain extra")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(
    python: Path,
    source: Path,
    workers: int,
    junit: Path,
    plugin: bool,
    reports: Path,
    targets: tuple[str, ...] = ("tests/unit_tests",),
) -> tuple[float, float]:
    """One run of the unit suite; returns its wall time and CPU time in seconds."""
    cmd = [str(python), "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider"]
    cmd += ["-n", str(workers), "--disable-socket", "--allow-unix-socket"]
    cmd += ["--ignore", BENCHMARKS, f"--junitxml={junit}", "--tb=line"]
    env = dict(os.environ, LANGCHAIN_TRACING_V2="false", LANGSMITH_TRACING="false")
    env.pop("GREENFLASH_API_KEY", None)
    if plugin:
        cmd += ["-p", "plugin"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env["GF_COMPAT_REPORT_DIR"] = str(reports)
    start, cpu = time.perf_counter(), _children_cpu()
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=source, env=env, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, _children_cpu() - cpu


def outcomes(junit: Path) -> dict[str, str]:
    """Test id (``module::name``) -> passed / failed / error / skipped."""
    result: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = "failed" if tag == "failure" else tag
                break
        # a failing teardown adds a second entry for the same test: keep the worst
        if result.get(test_id) in ("failed", "error"):
            continue
        result[test_id] = outcome
    return result


def node_id(source: Path, test_id: str) -> str:
    """``tests.unit_tests.mod[.Class]::name`` (junit) -> a pytest node id."""
    classname, name = test_id.split("::", 1)
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (source / path).is_file():
            return "::".join([path, *parts[i:], name])
    return test_id


def recheck(python: Path, source: Path, suspects: list[str], attempts: int = 3) -> list[str]:
    """The suspects that fail only with us again and again, run serially.

    Some of the suite's tests time themselves (rate limiters: 0.1 s windows) and fail now
    and then on a loaded machine, bare or not. A failure of ours fails every time: a
    suspect is confirmed when it fails every instrumented re-run and passes at least one
    bare re-run.
    """
    scratch = CACHE / "recheck"
    scratch.mkdir(exist_ok=True)
    bad = ("failed", "error")

    def rerun(tests: list[str], plugin: bool) -> dict[str, str]:
        junit = scratch / ("instrumented.xml" if plugin else "bare.xml")
        targets = tuple(node_id(source, t) for t in tests)
        run_suite(python, source, 0, junit, plugin, scratch, targets)
        return outcomes(junit)

    failing = list(suspects)
    for _ in range(attempts):
        if failing:
            result = rerun(failing, plugin=True)
            failing = [t for t in failing if result.get(t) in bad]
    confirmed: list[str] = []
    for _ in range(attempts):
        pending = [t for t in failing if t not in confirmed]
        if pending:
            result = rerun(pending, plugin=False)
            confirmed += [t for t in pending if result.get(t) not in bad]
    return sorted(confirmed)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--floor", action="store_true", help="run the suite of our declared langchain-core floor"
    )
    args = parser.parse_args(argv)

    version = declared_floor() if args.floor else importlib.metadata.version(PACKAGE)
    source = fetch_sdist(version)
    python = make_venv(source, version)
    reports = CACHE / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for old in reports.glob("*.json"):
        old.unlink()

    bare_xml, ours_xml = CACHE / "bare.xml", CACHE / "instrumented.xml"
    bare_time = run_suite(python, source, args.workers, bare_xml, False, reports)
    ours_time = run_suite(python, source, args.workers, ours_xml, True, reports)
    bare, ours = outcomes(bare_xml), outcomes(ours_xml)

    print(f"\n{PACKAGE} {version} unit suite ({len(bare)} tests, -n {args.workers}):")
    for name, result, (wall, cpu) in (("bare", bare, bare_time), ("instrumented", ours, ours_time)):
        counts = Counter(result.values())
        summary = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped"))
        print(f"  {name:<13} {summary}  in {wall:.0f} s ({cpu:.0f} s CPU)")

    bad = ("failed", "error")
    only_ours = sorted(t for t, o in ours.items() if o in bad and bare.get(t) not in bad)
    missing = sorted(set(bare) - set(ours))
    suspects = [t for t in only_ours if t not in ALLOWLIST]
    unexpected = recheck(python, source, suspects) if suspects else []
    for test_id in only_ours:
        print(f"  fails only with us: {test_id}")
        if test_id in ALLOWLIST:
            print(f"    allowed: {ALLOWLIST[test_id]}")
        else:
            verdict = "NOT ALLOWED" if test_id in unexpected else "flaky: passed on a re-run"
            print(f"    {verdict}")
    for test_id in sorted(t for t, o in bare.items() if o in bad and ours.get(t) not in bad):
        print(f"  fails only bare (flaky, not ours): {test_id}")
    for test_id in missing:
        print(f"  missing from the instrumented run: {test_id}")
    both = sorted(t for t, o in ours.items() if o in bad and bare.get(t) in bad)
    if both:
        print(f"  failing in both runs (not ours): {len(both)}, e.g. {both[:3]}")

    totals: Counter[str] = Counter()
    warnings: list[str] = []
    for path in sorted(reports.glob("*.json")):
        report = json.loads(path.read_text())
        warnings += report.pop("warnings")
        totals.update(report)
    print(
        f"  our counters: {totals['events_recorded']} events recorded, "
        f"{totals['messages_sent']} messages sent to the in-memory exporter, "
        f"{totals['dropped']} dropped, {totals['failed_mapping']} failed mappings"
    )
    print(f"  warnings from our loggers: {len(warnings)}")
    for line in sorted(set(warnings)):
        print(f"    {line}")

    problems = []
    if unexpected or missing:
        problems.append(f"{len(unexpected)} test(s) fail only with our instrumentation")
    if not totals["events_recorded"]:
        problems.append("our plugin recorded nothing: it did not run")
    if totals["dropped"] or totals["failed_mapping"]:
        problems.append("events were dropped or failed to map")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
