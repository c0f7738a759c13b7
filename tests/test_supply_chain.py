"""Supply chain: bounded dependencies, the lock files the venv is installed from, the audit.

The audit runs the real `make audit` (pip-audit through .ci/audit.py) against services that
cannot be reached (a refused port, an unreachable proxy) and against a small local OSV
service on 127.0.0.1 that knows one vulnerability.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SKIPPED = "audit skipped: service unreachable\n"


def _entries(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """A lock file's pins: canonical name -> (version, hashes)."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin, *options = line.split()
        name, _, pinned = pin.partition("==")
        assert pinned, f"{lock.name}: {pin!r} is not pinned with =="
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        entries[canonicalize_name(name)] = (pinned, hashes)
    return entries


DEV_LOCK = _entries(ROOT / "requirements-dev.lock")
RUN_LOCK = _entries(ROOT / "requirements.lock")
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
EXTRAS = [
    Requirement(r) for rs in PYPROJECT["project"]["optional-dependencies"].values() for r in rs
]


def test_every_dependency_has_an_upper_bound() -> None:
    build = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    unbounded = [
        str(r)
        for r in [*RUNTIME, *EXTRAS, *build]
        if not any(s.operator in ("<", "<=", "==", "~=", "===") for s in r.specifier)
    ]
    assert unbounded == []


def test_the_locks_pin_every_dependency_within_its_bounds_with_hashes() -> None:
    for lock, requirements in ((RUN_LOCK, RUNTIME), (DEV_LOCK, [*RUNTIME, *EXTRAS])):
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in lock, f"{name} is in pyproject.toml but not locked: run make lock"
            pinned = lock[name][0]
            assert requirement.specifier.contains(Version(pinned)), (name, pinned)
            for extra in requirement.extras:  # psycopg[binary] brings psycopg-binary
                assert canonicalize_name(f"{name}-{extra}") in lock, (name, extra)
    assert all(hashes for _, hashes in DEV_LOCK.values())
    assert all(hashes for _, hashes in RUN_LOCK.values())
    # The runtime lock is the runtime part of the dev lock, at the same versions.
    assert {n: DEV_LOCK[n] for n in RUN_LOCK} == RUN_LOCK
    assert set(DEV_LOCK) > set(RUN_LOCK)


def test_the_venv_has_exactly_the_locked_versions() -> None:
    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    differ = {n: (v, installed(n)) for n, (v, _) in DEV_LOCK.items() if installed(n) != v}
    assert differ == {}, "name: (locked, installed); `make` installs the lock"


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _make_audit(args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # -o: the venv the suite runs in is taken as installed, never rebuilt here.
    command = ["make", "-s", "-o", ".venv/.installed-stamp", "audit", f"AUDIT_ARGS={args}"]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_audit_with_the_service_unreachable_says_skipped_and_passes_nothing(
    refused_port: int,
) -> None:
    run = _make_audit(f"-s osv --osv-url http://127.0.0.1:{refused_port}/v1/query")
    assert (run.returncode, run.stdout) == (0, SKIPPED), run.stderr
    assert "Connection refused" in run.stderr


def test_audit_through_an_unreachable_proxy_says_skipped(refused_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy")}
    env["HTTPS_PROXY"] = f"http://127.0.0.1:{refused_port}"
    run = _make_audit("--timeout 5", env)
    assert (run.returncode, run.stdout) == (0, SKIPPED), run.stderr
    assert "ProxyError" in run.stderr


class _Osv(BaseHTTPRequestHandler):
    """OSV's /v1/query: one vulnerability, in whichever package the server was told."""

    vulnerable: str = ""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = query["package"]["name"]
        answer: dict[str, object] = {}
        if name == self.vulnerable:
            affected = {
                "package": {"name": name, "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99"}]}],
            }
            answer = {"vulns": [{"id": "PYSEC-0000-1", "summary": "test", "affected": [affected]}]}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def osv() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()


def _audit(lock: Path, osv_url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, ".ci/audit.py", str(lock), "-s", "osv", "--osv-url", osv_url]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_audit_with_a_service_that_answers_passes_or_lists_the_vulnerability(
    osv: str, tmp_path: Path
) -> None:
    lock = tmp_path / "small.lock"
    names = ["jinja2", "structlog"]
    lock.write_text(
        "".join(
            f"{n}=={DEV_LOCK[n][0]} " + " ".join(f"--hash={h}" for h in DEV_LOCK[n][1]) + "\n"
            for n in names
        )
    )
    _Osv.vulnerable = ""
    clean = _audit(lock, osv)
    assert (clean.returncode, clean.stdout) == (
        0,
        "audit passed: 2 pinned packages, no known vulnerabilities\n",
    ), clean.stderr

    _Osv.vulnerable = "structlog"
    found = _audit(lock, osv)
    assert (found.returncode, found.stdout) == (
        1,
        f"structlog {DEV_LOCK['structlog'][0]}: PYSEC-0000-1 (fixed in 99)\n"
        "audit failed: 1 known vulnerabilities in 1 packages\n",
    ), found.stderr
