"""Disk full: the store on a small tmpfs that fills up while the engine trades.

The headless engine runs on the demo market at speed max with the auto policy, its
store on a 2 MiB tmpfs. When a commit meets the full disk (SQLite's SQLITE_FULL, from
the kernel's ENOSPC), the engine stops trading and exits with ``EXIT_DISK_FULL`` (5)
and one ``cma: disk full: ...`` line naming the store, never a traceback. What the
store holds is intact: ``cma db check`` passes on a copy taken out of the full
filesystem, and again in place once space is freed (the tmpfs remounted larger), where
the engine starts again on the same store and runs.

Mounting needs root: CI runs as root on a fresh VM. Elsewhere the same steps run in a
user and mount namespace of their own (``unshare --user --map-root-user --mount``), where
an unprivileged user may mount a tmpfs; a real ENOSPC either way (``RLIMIT_FSIZE``
would give EFBIG and a signal, not a full disk). Only where neither is possible is the
test skipped, and never under CI (``CI`` set): there it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import home_env

ROOT = Path(__file__).resolve().parents[1]
SIZE = "2m"


def _env(home: Path) -> dict[str, str]:
    return home_env(
        home,
        PYTHONPATH=str(ROOT),
        CMA_ENGINE__STATUS_INTERVAL_SECONDS="60",
        CMA_APPROVAL__AUTO_CONFIDENCE="0.3",  # it trades from its first hours
    )


def _cma(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _fills(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0])
    finally:
        conn.close()


def fill_and_free(work: Path) -> dict[str, Any]:
    """The steps, as root (or root of a namespace): mount, fill, copy out, free, check."""
    disk, copy = work / "disk", work / "copy"
    disk.mkdir()
    copy.mkdir()
    env = _env(work)
    db = disk / "cma.db"
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(disk)], check=True)
    try:
        full = _cma(env, "run", "--headless", "--speed", "max", "--policy", "auto",
                    "--db", str(db), "--duration", "90s")  # fmt: skip
        df = shutil.disk_usage(disk)
        for f in disk.iterdir():
            if f.name.startswith("cma.db") and not f.name.endswith(".lock"):
                shutil.copyfile(f, copy / f.name)
        copied = _cma(env, "db", "check", "--db", str(copy / "cma.db"))
        fills = _fills(copy / "cma.db")
        # Free space: the same filesystem, larger.
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        in_place = _cma(env, "db", "check", "--db", str(db))
        again = _cma(env, "run", "--headless", "--speed", "max", "--policy", "auto",
                     "--db", str(db), "--duration", "1s")  # fmt: skip
        after = _cma(env, "db", "check", "--db", str(db))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    return {
        "code": full.returncode, "stdout": full.stdout, "stderr": full.stderr,
        "free_bytes": df.free, "fills": fills,
        "copied_check": copied.returncode, "copied_out": copied.stdout + copied.stderr,
        "in_place_check": in_place.returncode, "in_place_out": in_place.stdout + in_place.stderr,
        "again": again.returncode, "again_err": again.stderr,
        "after_check": after.returncode, "after_out": after.stdout + after.stderr,
    }  # fmt: skip


def _run_steps(work: Path) -> dict[str, Any]:
    if os.geteuid() == 0:
        return fill_and_free(work)
    unshare = shutil.which("unshare")
    probe = None
    if unshare is not None:
        probe = subprocess.run(
            [unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True
        )
    if probe is None or probe.returncode != 0:
        reason = "mounting a tmpfs needs root or an unprivileged user namespace (unshare)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run this test")
        pytest.skip(reason)
    assert unshare is not None
    done = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", sys.executable, __file__, str(work)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_a_full_disk_stops_trading_with_a_clear_message_and_corrupts_nothing(
    tmp_path: Path,
) -> None:
    r = _run_steps(tmp_path)
    assert r["code"] == 5, r
    lines = r["stderr"].strip().splitlines()
    assert "Traceback" not in r["stderr"], r["stderr"]
    said = [line for line in lines if line.startswith("cma: ")]
    assert len(said) == 1, lines
    assert re.fullmatch(
        r"cma: disk full: the store \S+/disk/cma\.db cannot be written \(database or disk "
        r"is full\); trading stopped, .* \(exit 5\)",
        said[0],
    ), said
    assert r["free_bytes"] < 64 * 1024, r["free_bytes"]  # it did fill the disk
    assert r["fills"] > 0, r  # it traded before the disk filled
    assert r["copied_check"] == 0, r["copied_out"]
    assert r["in_place_check"] == 0, r["in_place_out"]
    assert r["again"] == 0, r["again_err"]  # with space again, it runs on the same store
    assert r["after_check"] == 0, r["after_out"]


if __name__ == "__main__":  # the steps inside a user and mount namespace of their own
    print(json.dumps(fill_and_free(Path(sys.argv[1]))))
