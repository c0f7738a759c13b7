"""Error tracking (tui/tracking.py): on only with SENTRY_DSN, and what reaches Sentry holds
no key, no signature, no DSN, and its breadcrumbs no amounts.

Sentry's own extension point for where envelopes go, a ``sentry_sdk.transport.Transport``
subclass, captures them in a fresh interpreter (sentry-sdk's hooks are process-wide), which
writes them to a JSON file the test reads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "FAKEKEYvmPwT7x3Qe9LrA2"
API_SECRET = "FAKESECRETzN8kD4hJ6sW0yU5"
DSN_KEY = "0123456789abcdef0123456789abcdef"
DSN = f"http://{DSN_KEY}@127.0.0.1:9/42"
SIGNATURE = "5f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"

SCRIPT = """
import json, logging, os, sys
from decimal import Decimal

import sentry_sdk
from sentry_sdk.transport import Transport

from tui.tracking import start_tracking

# From the environment: Sentry sends sys.argv (cma never has a key there).
API_KEY, API_SECRET, SIGNATURE, OUT = (os.environ[f"T_{n}"] for n in ("KEY", "SECRET", "SIG", "O"))
envelopes = []


class Capture(Transport):
    def capture_envelope(self, envelope):
        for item in envelope.items:
            if item.type == "event":
                envelopes.append(item.get_event())


assert start_tracking([API_KEY, API_SECRET], transport=Capture())
logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])
log = logging.getLogger("cma.engine")
# Breadcrumbs: log lines and one added by hand, with amounts and a key in them.
log.info("filled buy 0.5 BTC/USDT at 43210.12, fee 1.5e-3, key %s", API_KEY)
sentry_sdk.add_breadcrumb(
    category="order", message="sent sell 12 ETH/USDT",
    data={"qty": Decimal("0.25"), "price": 43000.5, "prices": [1, 2.5], "note": "cash 99,000.10"},
)


def place_order():
    # Locals Sentry sends with the stack frame (under names its own scrubber lets through).
    creds = f"{API_KEY}:{API_SECRET}"
    url = f"https://api.binance.com/api/v3/order?symbol=BTCUSDT&signature={SIGNATURE}"
    headers = {"X-MBX-APIKEY": API_KEY}
    raise RuntimeError(f"binance refused key {API_KEY} with {creds} on {url}")


try:
    place_order()
except RuntimeError:
    sentry_sdk.capture_exception()
log.error("engine stopped on an error: key %s", API_KEY)  # the logging integration's event
sentry_sdk.flush()
with open(OUT, "w") as f:
    json.dump(envelopes, f, default=str)
"""


def captured(tmp_path: Path) -> tuple[list[dict[str, Any]], str]:
    """The events the transport received, and their whole text."""
    out = tmp_path / "events.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMA_", "SENTRY_"))}
    env.update(PYTHONPATH=str(ROOT), SENTRY_DSN=DSN, T_KEY=API_KEY, T_SECRET=API_SECRET)
    env.update(T_SIG=SIGNATURE, T_O=str(out))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    return json.loads(text), text


def test_no_key_signature_or_dsn_reaches_the_transport_and_breadcrumbs_carry_no_amounts(
    tmp_path: Path,
) -> None:
    events, text = captured(tmp_path)
    assert len(events) == 2  # the exception, and the error the log recorded
    for secret in (API_KEY, API_SECRET, SIGNATURE, DSN_KEY):
        assert secret not in text
    # The events are there, redacted rather than emptied: the message, the frame's locals.
    exc = events[0]["exception"]["values"][-1]
    assert exc["type"] == "RuntimeError"
    assert exc["value"] == (
        "binance refused key ********** with **********:********** on "
        "https://api.binance.com/api/v3/order?symbol=BTCUSDT&signature=***"  # the exchange mask
    )
    frame = exc["stacktrace"]["frames"][-1]
    assert frame["function"] == "place_order"
    assert frame["vars"]["creds"] == "'**********:**********'"
    assert frame["vars"]["url"].endswith("&signature=***'")
    assert "engine stopped on an error: key **********" in json.dumps(events[1])
    # Breadcrumbs: the log line and the hand-made one, with no number and no number field.
    crumbs = events[0]["breadcrumbs"]["values"]
    messages = [c.get("message") for c in crumbs]
    assert "filled buy # BTC/USDT at #, fee #, key **********" in messages
    (order,) = [c for c in crumbs if c.get("category") == "order"]
    assert order["message"] == "sent sell # ETH/USDT"
    assert order["data"] == {"prices": [], "note": "cash #"}
    for crumb in crumbs:
        assert not re.search(r"\d", json.dumps({k: crumb.get(k) for k in ("message", "data")}))


def test_without_a_dsn_tracking_is_off_and_sentry_is_not_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMA_", "SENTRY_"))}
    env.update(PYTHONPATH=str(ROOT))
    probe = (
        "import sys; from tui.tracking import start_tracking; "
        "print(start_tracking(['k' * 8]), 'sentry_sdk' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_a_malformed_dsn_exits_2_without_showing_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMA_", "SENTRY_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        SENTRY_DSN=f"nonsense{DSN_KEY}",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tui", "run", "--headless", "--duration", "1s",
         "--db", str(tmp_path / "cma.db")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == "cma: SENTRY_DSN: not a valid Sentry DSN\n"
    assert not (tmp_path / "cma.db").exists()  # nothing started
