"""A supervised program killed outright: its restart ends what the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tripflow.services.process_group import end_group, group_members

# A leader that forks a long sleeper into its own group, as the scheduler forks workers.
FORKING = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"


def start_guarded(record: Path) -> subprocess.Popen[bytes]:
    # start_new_session: a group of its own, as supervisord gives every program.
    return subprocess.Popen(
        [sys.executable, "-m", "tripflow.services.process_group", str(record), "--",
         sys.executable, "-c", FORKING],
        start_new_session=True,
    )  # fmt: skip


def children_of(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = psutil.Process(process.pid).children()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the program forked nothing")


def test_a_restart_ends_what_the_killed_predecessor_left_in_its_group(tmp_path: Path) -> None:
    record = tmp_path / "program.group"
    first = start_guarded(record)
    (orphan,) = children_of(first)
    first.kill()
    first.wait()
    assert orphan.is_running()  # outlived its parent, as the scheduler's workers did
    assert record.read_text().split()[0] == str(first.pid)

    second = start_guarded(record)
    try:
        children_of(second)
        psutil.wait_procs([orphan], timeout=30)
        assert not orphan.is_running()
        assert record.read_text().split()[0] == str(second.pid)
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait()


def test_ending_a_group_spares_processes_older_than_its_leader(tmp_path: Path) -> None:
    older = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        # A group id reused later by an unrelated group: its leader started after `older`.
        assert group_members(older.pid, started_after=time.time() + 60) == []
        assert end_group(older.pid, started_after=time.time() + 60) == 0
        assert older.poll() is None
        assert end_group(older.pid, started_after=0, grace=5) == 1
        # Reaped by end_group's wait (it is this test's child): gone from the process table.
        assert not psutil.pid_exists(older.pid)
    finally:
        older.kill()
        older.wait()
