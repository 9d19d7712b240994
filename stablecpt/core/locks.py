"""One command at a time per output folder: an exclusive lock held for the whole command.

`output_lock(folder, what)` guards a curation run folder, a shard or instruction version's name folder, a
training run or an evaluation output. A second command on the same folder is refused with one line naming
the holder (pid, host); a lock left by a process that died on this host (kill -9, OOM killer, power cut on
a workstation) is taken over, with a line saying so.

The lock is filelock's `SoftFileLock` (a marker file created exclusively, recording pid, host and process
start time; a same-host holder that is gone, or whose pid was reused, counts as stale and is reclaimed
atomically). It lives beside the folder, `<parent>/.<name>.lock`, so it never appears among the folder's
files, fingerprints or emptiness checks, and survives `--restart` deleting the folder.

Under `accelerate launch` / torchrun every process runs the command's handler: the run owns the lock, held
by global rank 0 (`RANK`, else `LOCAL_RANK`); the other ranks neither take nor check it. If rank 0 is
refused it exits with status 2 and the launcher stops the other ranks.

Limits (docs/curation.md, "Locks"): the marker is exclusive wherever exclusive create is atomic (local
disks, NFSv3+, Lustre, GPFS). Liveness is only provable on the holder's host: a lock left by a killed
process on another node (a Slurm job cancelled with SIGKILL) is never taken over automatically; the
refusal names that node and pid, and the lock file can be deleted once that job is known to be gone.
Containers sharing a filesystem under the same host name but different pid namespaces see each other's
pids as dead; filelock detects namespaced host names where it can.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stablecpt.core.errors import UserError


def process_rank() -> int:
    """This process's global rank under a distributed launcher (0 when not launched by one)."""
    for key in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(key, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return 0


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def _holder(path: Path) -> tuple[int | None, str | None]:
    """(pid, host) recorded in a lock file, or (None, None) when there is none or it cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None, None
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    host = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return pid, host


def _this_host() -> str:
    """The host name as filelock records it (with its pid-namespace mark inside a container)."""
    try:
        from filelock._identity import host_name
    except ImportError:
        import socket

        return socket.gethostname()
    return host_name()


def process_running(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def output_lock(folder: str | Path, what: str, log=None) -> Iterator[Path | None]:
    """Hold the exclusive lock on `folder` for the block (its parent is created); UserError if another holds it.

    Yields the lock file's path, or None on ranks other than 0, which do not lock.
    """
    if process_rank() != 0:
        yield None
        return
    from filelock import SoftFileLock, Timeout

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    path = lock_path(folder)
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UserError(f"{Path(folder)}: is a file, not an output folder")
    previous_pid = _holder(path)[0]
    lock = SoftFileLock(str(path), timeout=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
        except Timeout:
            if _holder(path)[0] is not None:
                raise
            # no record (yet): a holder still writing it, or one killed before it could; filelock reclaims
            # a record that stays malformed for 2 s
            lock.acquire(timeout=3)
    except Timeout:  # (a TimeoutError, so an OSError: first)
        pid, host = _holder(path)
        holder = f"pid {pid}" if pid is not None else "another process"
        elsewhere = host is not None and host != _this_host()
        where = f" on host {host}" if elsewhere else ""
        advice = (f"if that process is gone, delete {path}" if elsewhere
                  else "wait for it to finish, or stop it")
        raise UserError(f"{Path(folder)}: {what} is in use by {holder}{where} (lock {path}); {advice}") from None
    except OSError as err:
        raise UserError(f"{Path(folder)}: cannot create its lock file {path} ({err.strerror or err})") from None
    try:
        if previous_pid is not None and previous_pid != os.getpid() and not process_running(previous_pid):
            log(f"stablecpt: {Path(folder)}: took over the lock of pid {previous_pid}, which is no longer running")
        yield path
    finally:
        lock.release()
