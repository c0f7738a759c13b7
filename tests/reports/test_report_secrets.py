"""No report contains an API key: known fake keys are put in the config file, the
environment and a real keyring backend (keyrings.alt's file keyring), a console
session and a backtest run with them, and every format of both reports is searched
(the CSV zip unpacked), together with the store and the log they left."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from report_helpers import CMA, backtest, clean_env

KEY = "FAKE-KEY-7c1e9a02d4b84f6f"
SECRET = "FAKE-SECRET-51d0c3e8aa7e4b19"
KEYRING_BACKEND = "keyrings.alt.file.PlaintextKeyring"


def secret_env(home: Path) -> dict[str, str]:
    env = clean_env(home)
    env["PYTHON_KEYRING_BACKEND"] = KEYRING_BACKEND
    env["CMA_EXCHANGE__API_KEY"] = KEY
    env["CMA_EXCHANGE__API_SECRET"] = SECRET
    return env


def put_in_keyring(env: dict[str, str]) -> None:
    code = (
        "import keyring, sys; "
        "keyring.set_password('cma', 'binance:api_key', sys.argv[1]); "
        "keyring.set_password('cma', 'binance:api_secret', sys.argv[2]); "
        "assert keyring.get_password('cma', 'binance:api_key') == sys.argv[1]; "
        "print(type(keyring.get_keyring()).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, KEY, SECRET],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "PlaintextKeyring"  # a real backend, not the fail one


def contents(path: Path) -> list[tuple[str, bytes]]:
    """``path``'s bytes, or each member's of a zip."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            return [(f"{path.name}:{n}", z.read(n)) for n in z.namelist()]
    return [(path.name, path.read_bytes())]


def test_no_report_in_any_format_contains_the_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = secret_env(home)
    put_in_keyring(env)
    assert any((home / "data").rglob("keyring_pass.cfg"))  # the keyring's own file
    config = home / "config" / "cma" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    # The key beside the exchange, as a person might paste it (the file may not hold it
    # as a setting: that is refused), and the config names the exchange.
    config.write_text(
        f'# api_key = "{KEY}"\n# api_secret = "{SECRET}"\n[exchange]\nid = "binance"\n'
    )
    db = home / "data" / "cma" / "cma.db"

    run = subprocess.run(
        [CMA, "run", "--headless", "--policy", "auto", "--speed", "max", "--duration", "2s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    backtest(home, None, "--approve", "person", "--reject-rate", "0.5", "--seed", "3")

    listed = subprocess.run(
        [CMA, "report", "--list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    refs = [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]
    assert "1" in refs and any(":" in r for r in refs), listed.stdout

    found: list[tuple[str, bytes]] = []
    for ref in refs:
        for fmt in ("md", "html", "csv", "json"):
            out = tmp_path / "out" / f"{ref.replace(':', '-')}.{fmt}"
            done = subprocess.run(
                [CMA, "report", ref, "--format", fmt, "--output", str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert KEY not in done.stdout + done.stderr and SECRET not in done.stdout + done.stderr
            for written in (out.parent).glob(f"{out.stem}*"):
                found.extend(contents(written))
    assert len(found) >= 2 * 6, "every format of both sessions was written"
    # What the sessions left behind: the stores and the log.
    for store in [db, *(db.parent / "backtests").glob("*.db")]:
        found.append((store.name, store.read_bytes()))
    for log in (home / "state").rglob("*.log"):
        found.append((log.name, log.read_bytes()))
    for name, data in found:
        for secret in (KEY, SECRET):
            assert secret.encode() not in data, f"{secret} in {name}"
    # The search can fail: the keys are in what the sessions were given.
    assert KEY.encode() in config.read_bytes()
