"""Start a supervised program only after what its killed predecessor left behind is gone.

supervisord makes every program the leader of a process group and stops programs by group,
but a program killed outright (SIGKILL, the OOM killer) leaves the processes it forked
running in its group: the Airflow scheduler's LocalExecutor workers and log server, with
the tasks they run and the database transactions they hold. supervisord restarts the
program in a new group and never stops the old one, so those processes ran on beside the
new scheduler (tasks twice, locks held) and outlived `tripflow down`.

Each program is started as `python -m tripflow.services.process_group RECORD -- COMMAND...`:
it ends the processes still in the group named in RECORD (its predecessor's), writes its
own group there, then becomes COMMAND.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil

# Seconds the leftovers get to end on SIGTERM before SIGKILL.
GRACE_SECONDS = 10.0


def group_members(pgid: int, started_after: float) -> list[psutil.Process]:
    """Return the processes in a process group that started after its leader did (a group
    id reused by an unrelated process later is told apart by the leader's start time)."""
    found = []
    for process in psutil.process_iter(["create_time"]):
        try:
            if process.pid == os.getpid() or os.getpgid(process.pid) != pgid:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        if process.info["create_time"] >= started_after:
            found.append(process)
    return found


def end_group(pgid: int, started_after: float, grace: float = GRACE_SECONDS) -> int:
    """End what is left of a process group: SIGTERM, then SIGKILL after `grace` seconds;
    return how many processes were ended."""
    members = group_members(pgid, started_after)
    for process in members:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(members, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=grace)
    return len(members)


def main(argv: Sequence[str] | None = None) -> None:
    """End the recorded predecessor's group, record this one, then exec the command."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) < 3 or arguments[1] != "--":
        sys.exit("usage: python -m tripflow.services.process_group RECORD -- COMMAND...")
    record, command = Path(arguments[0]), arguments[2:]
    if os.getpgrp() != os.getpid():
        # Not a group leader (not started by supervisord): there is no group of ours to
        # record, and the one we are in is somebody else's.
        os.execvp(command[0], command)
    try:
        pgid_text, started_text = record.read_text().split()
        previous, started = int(pgid_text), float(started_text)
    except (FileNotFoundError, ValueError):
        previous = None
    if previous is not None and previous != os.getpgrp():
        ended = end_group(previous, started)
        if ended:
            print(
                f"ended {ended} processes its killed predecessor (group {previous}) left behind",
                file=sys.stderr,
                flush=True,
            )
    me = psutil.Process()
    record.write_text(f"{os.getpgrp()} {me.create_time()}\n")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
