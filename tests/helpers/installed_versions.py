"""Print the installed version of each named package; in a floor cell, fail unless it is
the declared floor.

Run by noxfile.py inside a cell's environment, as a file (so the cell log shows one command
line, not a script): ``python tests/helpers/installed_versions.py NAME=FLOOR ...``, where an
empty FLOOR only prints the version (the newest cells).
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys


def _release(version: str, width: int = 3) -> tuple[int, ...]:
    """The numeric release, zero-padded: "2.5" -> (2, 5, 0); "2.0b0" -> (2, 0, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    parts = [int(p) for p in match.group().split(".")[:width]] if match else []
    return tuple(parts) + (0,) * (width - len(parts))


def main(args: list[str]) -> int:
    bad = []
    for arg in args:
        name, _, floor = arg.partition("=")
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            bad.append(f"{name}: not installed")
            continue
        print(f"  {name} {have}" + (f" (declared floor {floor})" if floor else ""))
        if floor and _release(have) != _release(floor):
            bad.append(f"{name}: installed {have}, declared floor {floor}")
    if bad:
        print(
            "the floor cell did not install the declared floors: " + "; ".join(bad), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
