"""The spool: undelivered request bodies kept on disk (0600 files in a 0700 folder).

One file per request body. The API path is part of the name (``/messages`` has no
marker, other paths add ``~<path>``) so a resend goes where the original was meant to.
A file being resent is claimed by renaming it to ``<name>.sending-<pid>``, so two
processes sharing a spool never resend the same file; claims of a dead process are put
back. Resending is safe: the server deduplicates by ids.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

SUFFIX = ".json"
_DEFAULT_PATH = "/messages"


def _marker(path: str) -> str:
    if path == _DEFAULT_PATH:
        return ""
    return "~" + path.strip("/").replace("/", "+")


def path_of(file: Path) -> str:
    """The API path a spool file (or its claim) was written for."""
    stem = file.name.split(".sending")[0][: -len(SUFFIX)]
    if "~" not in stem:
        return _DEFAULT_PATH
    return "/" + stem.split("~", 1)[1].replace("+", "/")


class Spool:
    """A spool folder. Methods raise ``OSError``; the uploader decides what that means."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._own_reclaimed = False  # see _reclaim_stale

    def write(self, path: str, body: bytes) -> Path:
        """Write one body atomically, readable by the owner only."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if self.folder.stat().st_mode & 0o077:
                self.folder.chmod(0o700)  # created earlier with the default umask
        name = f"{time.time_ns()}-{uuid.uuid4().hex}{_marker(path)}{SUFFIX}"
        tmp = self.folder / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        final = self.folder / name
        tmp.rename(final)
        return final

    def has_files(self) -> bool:
        """True when something waits to be resent (or is claimed by a dead process)."""
        try:
            return any(self.folder.glob("*" + SUFFIX)) or any(
                self.folder.glob("*" + SUFFIX + ".sending-*")
            )
        except OSError:
            return False

    def claim(self) -> Iterator[tuple[Path, bytes]]:
        """Claim files oldest first, yielding (claimed path, body); skips vanished ones."""
        if not self.folder.is_dir():
            return
        self._reclaim_stale()
        for file in sorted(self.folder.glob("*" + SUFFIX)):
            claimed = file.with_name(f"{file.name}.sending-{os.getpid()}")
            try:
                file.rename(claimed)  # atomic: another process may be resending too
                body = claimed.read_bytes()
            except OSError:
                continue
            yield claimed, body

    def keep(self, path: str, body: bytes, claimed: Path | None) -> Path:
        """Keep a body for a later resend: a claimed file is put back, else written."""
        if claimed is not None:
            with contextlib.suppress(OSError):  # gone: delivered meanwhile, write it again
                return self.unclaim(claimed)
        return self.write(path, body)

    def resends(self) -> Iterator[tuple[Path, str, bytes, int]]:
        """Claimed files as (claimed path, API path, body, items it carries)."""
        for claimed, body in self.claim():
            path = path_of(claimed)
            count = 1
            if path == _DEFAULT_PATH:
                try:
                    count = len(orjson.loads(body).get("messages", []))
                except (ValueError, AttributeError):
                    continue  # not ours or damaged: left claimed, put back on a later run
            yield claimed, path, body, count

    @staticmethod
    def forget(claimed: Path | None) -> None:
        """Delete a spool file whose body was delivered (or rejected for good)."""
        if claimed is not None:
            with contextlib.suppress(OSError):
                claimed.unlink()

    @staticmethod
    def unclaim(claimed: Path) -> Path:
        """Put a claimed file back for a later resend; returns its name again."""
        original = claimed.with_name(claimed.name.split(".sending")[0])
        claimed.rename(original)
        return original

    def _reclaim_stale(self) -> None:
        """Put back files claimed by a process that died while resending them. Claims under
        this process's id are put back the first time only (an earlier process had the same
        id); after that they are this process's own resends, still in flight."""
        own_too, self._own_reclaimed = not self._own_reclaimed, True
        for file in self.folder.glob("*" + SUFFIX + ".sending-*"):
            try:
                pid = int(file.name.rsplit("-", 1)[1])
            except ValueError:
                continue
            if pid == os.getpid() and not own_too:
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                self.unclaim(file)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
