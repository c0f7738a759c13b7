"""Any settings that validate run: a real engine on a real store plays a short demo
market to the end without an exception. Anything else is a ConfigError naming each
field it refuses. Hypothesis draws the numbers from everywhere (inside and outside
each range, huge, tiny, negative, NaN, infinity, as numbers and as text)."""

from __future__ import annotations

import asyncio
import math
import os
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.config import CCXT_TIMEFRAMES, ConfigError, Settings, load_settings
from engine.runtime import Engine, make_feed
from persistence.store import Store
from tui.validate import check_settings

pytestmark = pytest.mark.usefixtures("isolated_env")


#: Numbers from everywhere: ordinary fractions and amounts, the edges, the absurd.
ODD_FLOATS = st.sampled_from(
    [0.0, -0.0, -1.0, 1e-300, 5e-324, 1e-9, 0.5, 1.0, 1.0000001, 2.0, 1e6, 1e9, 1e22, 1e308,
     math.inf, -math.inf, math.nan]
)  # fmt: skip
ANY_FLOAT = st.one_of(
    ODD_FLOATS,
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=-10.0, max_value=1e4),
    st.floats(allow_nan=True, allow_infinity=True),
)
ANY_INT = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 2**31, 2**63, 2**64, 10**30]),
    st.integers(min_value=-5, max_value=200),
    st.integers(),
)
ODD_DECIMALS = ["1e999", "1e22", "1e12", "1E+12", "0.000000001", "1e-30", "NaN", "-inf",
                "0", "-5", "10", "100000"]  # fmt: skip
ANY_DECIMAL = st.one_of(
    st.sampled_from(ODD_DECIMALS),
    st.decimals(min_value=Decimal("0.0000001"), max_value=Decimal("1e13"), places=None).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)
AS_TEXT_TOO = st.booleans()


def _sane_float(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats inside [low, high], its edges included (the bounds themselves must run)."""
    return st.one_of(st.sampled_from([low, high]), st.floats(low, high))


# Each numeric field: what its range allows (with the edges), to draw valid settings
# often enough that many examples run the engine; the wild strategies above refuse.
TINY = 5e-324
SANE: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    **{("risk", f): _sane_float(TINY, 1.0) for f in (
        "kelly_multiplier", "default_risk_fraction", "max_position_fraction",
        "max_risk_per_trade", "max_symbol_exposure", "max_total_exposure",
        "max_daily_loss", "max_drawdown", "reduce_drawdown")},
    ("risk", "max_correlation"): _sane_float(0.0, 1.0),
    ("approval", "auto_confidence"): _sane_float(0.0, 1.0),
    ("agents", "min_confidence"): _sane_float(0.0, 1.0),
    ("approval", "ttl_seconds"): _sane_float(1.0, 30 * 86_400.0),
    ("approval", "dedup_window_seconds"): _sane_float(0.0, 30 * 86_400.0),
    ("agents", "stop_atr"): _sane_float(TINY, 100.0),
    ("agents", "reward_risk"): _sane_float(TINY, 100.0),
    ("risk", "min_trades_for_kelly"): st.integers(1, 1_000_000),
    ("risk", "max_open_positions"): st.integers(1, 1_000),
    ("risk", "correlation_window"): st.integers(3, 10_000),
    ("approval", "max_pending"): st.integers(1, 10_000),
    ("agents", "min_votes"): st.integers(1, 2),
    ("feed", "seed"): st.integers(0, 2**32 - 1),
    ("risk", "initial_cash"): st.decimals(Decimal("1e-8"), Decimal(10**12)).map(str),
    ("risk", "min_notional"): st.decimals(Decimal("1e-12"), Decimal("1e-8")).map(str),
    ("broker", "fee_rate"): st.decimals(Decimal(0), Decimal("0.05")).map(str),
    ("broker", "slippage_bps"): st.decimals(Decimal(0), Decimal(500)).map(str),
}  # fmt: skip
WILD: dict[str, st.SearchStrategy[Any]] = {"float": ANY_FLOAT, "int": ANY_INT}


def _wild(section: str, field: str) -> st.SearchStrategy[Any]:
    if (section, field) in {("risk", "initial_cash"), ("risk", "min_notional"),
                            ("broker", "fee_rate"), ("broker", "slippage_bps")}:  # fmt: skip
        return ANY_DECIMAL
    annotation = Settings.model_fields[section].annotation.model_fields[field].annotation  # type: ignore[union-attr]
    return _number(ANY_INT if annotation is int else ANY_FLOAT)


def _number(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A number, or its text as a variable would give it."""
    return st.tuples(strategy, AS_TEXT_TOO).map(lambda p: str(p[0]) if p[1] else p[0])


@st.composite
def settings_input(draw: st.DrawFn) -> dict[str, Any]:
    """A few numeric fields set to anything (mostly within range), the rest at defaults."""
    chosen = draw(st.lists(st.sampled_from(sorted(SANE)), min_size=1, max_size=6, unique=True))
    out: dict[str, dict[str, Any]] = {}
    for section, field in chosen:
        wild = draw(st.integers(0, 3)) == 0  # a quarter of the fields out of bounds
        strategy = _wild(section, field) if wild else SANE[(section, field)]
        out.setdefault(section, {})[field] = draw(strategy)
    out.setdefault("feed", {})["timeframe"] = draw(st.sampled_from(CCXT_TIMEFRAMES))
    out["feed"]["symbols"] = draw(
        st.lists(
            st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    # The other kinds of setting, each drawn from what it allows.
    out.setdefault("broker", {})["allow_shorts"] = draw(st.sampled_from([None, True, False]))
    out.setdefault("engine", {})["close_positions_on_stop"] = draw(st.booleans())
    out.setdefault("risk", {})["auto_resume_next_day"] = draw(st.booleans())
    out.setdefault("agents", {})["enabled"] = draw(
        st.lists(st.sampled_from(["momentum", "price_action"]), min_size=1, max_size=2, unique=True)
    )
    approval = out.setdefault("approval", {})
    approval["below_confidence"] = draw(st.sampled_from(["queue", "reject"]))
    approval["on_stop"] = draw(st.sampled_from(["keep", "expire"]))
    approval.setdefault("policy", draw(st.sampled_from(["auto", "auto", "manual", "queue-only"])))
    approval.setdefault("auto_confidence", 0.3)  # so that auto approves and orders flow
    return out


#: Candles per symbol in each run: enough for the agents to warm up and trade.
BATCHES = 500


async def run_to_the_end(config: Settings, batches: int) -> Engine:
    """A real engine on an in-memory store over ``batches`` candles of the demo market."""
    fast = config.model_copy(update={"feed": config.feed.model_copy(update={"speed": "max"})})
    store = await Store.open(":memory:")
    try:
        engine = Engine(config, store, make_feed(fast, limit=batches))
        await engine.start()
        await engine.wait()
        await engine.stop()
        return engine
    finally:
        await store.close()


@settings(
    max_examples=int(os.environ.get("CMA_TEST_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(settings_input())
def test_any_settings_that_validate_run_the_engine_to_the_end(
    given_values: dict[str, Any],
) -> None:
    try:
        # What `cma run` accepts: the field checks and the checks beyond them.
        config = load_settings(environ={}, checks=check_settings, **given_values)
    except ConfigError as exc:
        message = str(exc)
        assert "Traceback" not in message
        lines = message.splitlines()[1:]
        assert lines, message
        named = {f"{s}.{f}" for s, fields in given_values.items() for f in fields}
        for line in lines:
            # Each line names a field that was given, or a default that one made wrong.
            field = line.strip().split(" = ", 1)[0]
            assert field in named or any(f in line for f in named), message
        event("refused")
        return
    event("ran")
    engine = asyncio.run(run_to_the_end(config, batches=BATCHES))
    assert engine.error is None, repr(engine.error)
    assert engine.candles_seen == BATCHES * len(config.feed.symbols)
    assert engine.equity_snapshot().equity.is_finite()
    event("traded" if engine.portfolio.cash != config.risk.initial_cash else "no trade")


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("risk", "initial_cash", "1e999"),
        ("risk", "initial_cash", "1e22"),
        ("risk", "initial_cash", "NaN"),
        ("risk", "min_notional", "1e999"),
        ("feed", "speed", math.inf),
        ("feed", "speed", "inf"),
        ("feed", "speed", math.nan),
        ("feed", "speed", 1e-300),
        ("approval", "ttl_seconds", 1e308),
        ("approval", "ttl_seconds", math.inf),
        ("approval", "dedup_window_seconds", math.inf),
        ("engine", "status_interval_seconds", 1e-300),
        ("agents", "stop_atr", math.inf),
        ("feed", "seed", 2**64),
        ("store", "busy_timeout_ms", 2**63),
        ("risk", "correlation_window", 10**9),
    ],
)
def test_huge_tiny_and_non_finite_numbers_are_refused_naming_the_field(
    section: str, field: str, value: Any
) -> None:
    with pytest.raises(ConfigError) as err:
        overrides: dict[str, Any] = {section: {field: value}}
        load_settings(environ={}, **overrides)
    assert f"{section}.{field} = " in str(err.value)


def test_min_notional_must_be_below_initial_cash() -> None:
    with pytest.raises(ConfigError, match=r"risk.min_notional = '500': must be below"):
        load_settings(environ={}, risk={"initial_cash": "400", "min_notional": "500"})


def test_the_largest_accepted_amounts_run() -> None:
    config = load_settings(
        environ={},
        risk={"initial_cash": "1e12", "min_notional": "1e9"},
        approval={"policy": "auto", "auto_confidence": 0.0},
        feed={"symbols": ["BTC/USDT"]},
    )
    engine = asyncio.run(run_to_the_end(config, batches=300))
    assert engine.error is None, repr(engine.error)
