"""`pip-audit --strict` over a lock file, or an explicit skip when no service answers.

Usage: python .ci/audit.py LOCKFILE [pip-audit options, e.g. -s osv --osv-url URL]

Prints the known vulnerabilities of the pinned set and exits 1 if there are any; prints
`audit passed: ...` and exits 0 if there are none. When the vulnerability service cannot be
reached it prints exactly `audit skipped: service unreachable` (and why, on stderr) and exits
0: CI goes on, and nothing claims the set was audited. "Unreachable" includes a service that
answers but knows no release at all (an artifact cache standing in for PyPI answers 404 to
every release): pip-audit without --strict would call that "No known vulnerabilities".
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

SKIPPED = "audit skipped: service unreachable"


def _pip_audit(args: list[str], report: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off"]
    command += ["--format", "json", "--output", str(report), "--disable-pip", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _read(report: Path) -> list[dict[str, Any]] | None:
    """The audited dependencies, or None when pip-audit stopped before writing any."""
    try:
        dependencies: list[dict[str, Any]] = json.loads(report.read_text())["dependencies"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dependencies


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _service_answers(options: list[str], tmp: Path) -> tuple[bool, str]:
    """Whether the service audits one release it surely knows: the pip running here."""
    probe = tmp / "probe.txt"
    probe.write_text(f"pip=={version('pip')}\n")
    report = tmp / "probe.json"
    run = _pip_audit(["--no-deps", "-r", str(probe), *options], report)
    dependencies = _read(report)
    if dependencies is None:
        return False, _last_line(run.stderr)
    skipped = [d["skip_reason"] for d in dependencies if "skip_reason" in d]
    if skipped or not dependencies:
        return False, skipped[0] if skipped else "no dependency audited"
    return True, ""


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("audit: usage: audit.py LOCKFILE [pip-audit options]", file=sys.stderr)
        return 2
    lock, options = Path(argv[0]), argv[1:]
    if not lock.is_file():
        print(f"audit: no lock file {lock}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        report = tmp / "report.json"
        run = _pip_audit(["--strict", "-r", str(lock), *options], report)
        dependencies = _read(report)
        if dependencies is None:
            answers, why = _service_answers(options, tmp)
            if not answers:
                print(SKIPPED, flush=True)
                print(f"audit: {why}", file=sys.stderr)
                return 0
            # The service answers, so the failure is the lock's (a release it does not know).
            sys.stderr.write(run.stderr)
            print(f"audit failed: {_last_line(run.stderr)}")
            return 1
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes})")
    if vulnerable:
        count = sum(len(d["vulns"]) for d in vulnerable)
        print(f"audit failed: {count} known vulnerabilities in {len(vulnerable)} packages")
        return 1
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        print(f"audit failed: pip-audit exited {run.returncode}")
        return 1
    print(f"audit passed: {len(dependencies)} pinned packages, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
