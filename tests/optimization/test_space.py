"""The search space: the default one, a space file, and every way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.agents.loader import BUILTIN_AGENTS
from engine.config import Settings, load_settings
from optimize.space import (
    SpaceError,
    apply,
    default_space,
    fingerprint,
    read_space,
    space_from_json,
    space_json,
    space_toml,
)
from reports.optimization import Param


def base(*agents: str) -> Settings:
    names = agents or ("price_action", "momentum")
    return load_settings(None, {}, agents={"enabled": list(names)})


def running(settings: Settings) -> dict[str, type]:
    return {name: BUILTIN_AGENTS[name] for name in settings.agents.enabled}


def space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def test_the_default_space_tunes_synthesis_approval_risk_and_the_running_agents() -> None:
    settings = base("sma_cross", "momentum")
    space = default_space(settings, running(settings))
    keys = [p.key for p in space]
    assert keys == sorted(keys)
    for key in ("agents.stop_atr", "agents.reward_risk", "approval.auto_confidence"):
        assert key in keys
    assert "agents.params.sma_cross.fast" in keys and "agents.params.momentum.rsi_period" in keys
    assert not any(k.startswith("agents.params.price_action.") for k in keys)
    fast = next(p for p in space if p.key == "agents.params.sma_cross.fast")
    assert fast.kind == "int" and isinstance(fast.low, int)


def test_a_space_file_reads_ranges_steps_logs_and_choices(tmp_path: Path) -> None:
    settings = base("sma_cross")
    path = space_file(
        tmp_path,
        """
[agents.stop_atr]
low = 1.0
high = 3.0
step = 0.5

[agents.params.sma_cross]
fast = { low = 5, high = 15 }

[risk.max_risk_per_trade]
low = 0.001
high = 0.05
log = true

[strategy.on_opposite]
choices = ["ignore", "reverse"]

[strategy.brackets]
choices = [true, false]
""",
    )
    space = read_space(path, settings, running(settings))
    by_key = {p.key: p for p in space}
    assert by_key["agents.stop_atr"] == Param("agents.stop_atr", "float", 1.0, 3.0, 0.5)
    assert by_key["agents.params.sma_cross.fast"].kind == "int"
    assert by_key["risk.max_risk_per_trade"].log
    assert by_key["strategy.on_opposite"].choices == ("ignore", "reverse")
    assert by_key["strategy.brackets"].choices == (True, False)
    # What --print-space writes reads back as the same space, and so does its JSON.
    again = read_space(space_file(tmp_path, space_toml(space)), settings, running(settings))
    assert again == space
    assert space_from_json(space_json(space)) == space
    assert fingerprint(again) == fingerprint(space)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[agents.stop_atrs]\nlow = 1.0\nhigh = 2.0\n", "agents.stop_atrs: no such setting"),
        ("[feed.speed]\nlow = 1.0\nhigh = 2.0\n", "feed.speed: feed settings are not tuned"),
        ("[nothing.here]\nlow = 1\nhigh = 2\n", "nothing.here: no such setting"),
        (
            "[agents.stop_atr]\nlow = 3.0\nhigh = 2.0\n",
            "agents.stop_atr: the range 3.0 .. 2.0 is empty",
        ),
        (
            "[agents.stop_atr]\nlow = 2.0\nhigh = 2.0\n",
            "agents.stop_atr: the range 2.0 .. 2.0 is empty",
        ),
        ("[strategy.on_opposite]\nchoices = []\n", "strategy.on_opposite: the choices are empty"),
        ('[strategy.on_opposite]\nchoices = ["exit"]\n', "strategy.on_opposite: one choice"),
        (
            '[strategy.on_opposite]\nchoices = ["exit", "flip"]\n',
            "strategy.on_opposite: 'flip' is refused",
        ),
        (
            "[strategy.on_opposite]\nlow = 1\nhigh = 2\n",
            "strategy.on_opposite: takes one of a few values",
        ),
        ("[agents.stop_atr]\nlow = 1.0\nhi = 2.0\n", "agents.stop_atr: unknown hi"),
        ("[agents.stop_atr]\nlow = 1.0\n", "agents.stop_atr: the range has no high"),
        ("[agents.stop_atr]\nlow = 1.0\nhigh = 200.0\n", "agents.stop_atr: 200.0 is refused"),
        (
            "[approval.auto_confidence]\nlow = 0.5\nhigh = 1.5\n",
            "approval.auto_confidence: 1.5 is refused",
        ),
        ("[agents.min_votes]\nlow = 1.5\nhigh = 3\n", "agents.min_votes: takes whole numbers"),
        ("[risk.max_risk_per_trade]\nlow = 0.0\nhigh = 0.1\nlog = true\n", "needs low above 0"),
        (
            "[agents.stop_atr]\nlow = 1.0\nhigh = 2.0\nstep = 5.0\n",
            "step 5.0 is wider than the range",
        ),
        ("[agents.stop_atr]\nlow = 1.0\nhigh = 2.0\nstep = 0\n", "step must be above 0"),
        ('[agents.stop_atr]\nlow = "a"\nhigh = 2.0\n', "agents.stop_atr: low must be a number"),
        (
            "[agents.params.momentum.rsi_period]\nlow = 5\nhigh = 9\n",
            "no running agent is named 'momentum'",
        ),
        (
            "[agents.params.sma_cross.fastest]\nlow = 5\nhigh = 9\n",
            "sma_cross has no setting 'fastest'",
        ),
        (
            "[agents.params.sma_cross.fast]\nlow = 0\nhigh = 9\n",
            "agents.params.sma_cross.fast: 0 is refused by sma_cross",
        ),
        ('[agents.enabled]\nchoices = [["a"], ["b"]]\n', "agents.enabled: is not a number"),
        ("[agents]\nstop_atr = 2.0\n", "agents.stop_atr: give a table with low and high"),
        ("", "tunes nothing"),
        ("[agents.stop_atr\nlow = 1\n", "not valid TOML"),
    ],
)
def test_a_bad_space_is_refused_naming_the_key(tmp_path: Path, text: str, says: str) -> None:
    settings = base("sma_cross")
    path = space_file(tmp_path, text)
    with pytest.raises(SpaceError) as caught:
        read_space(path, settings, running(settings))
    message = str(caught.value)
    assert message.startswith(f"--space {path}: "), message
    assert says in message, message


def test_a_missing_or_unreadable_space_file_is_named(tmp_path: Path) -> None:
    settings = base()
    for path, says in ((tmp_path / "none.toml", "not found"), (tmp_path, "is a directory")):
        with pytest.raises(SpaceError, match=says):
            read_space(path, settings, running(settings))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[agents.stop_atr]\n# caf\xe9\n")
    with pytest.raises(SpaceError, match="not UTF-8"):
        read_space(bad, settings, running(settings))


def _draw(p: Param, fraction: float, pick: int) -> object:
    if p.kind == "choice":
        return p.choices[pick % len(p.choices)]
    assert p.low is not None and p.high is not None
    if p.kind == "int":
        return int(p.low) + round(fraction * (int(p.high) - int(p.low)))
    return float(p.low) + fraction * (float(p.high) - float(p.low))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_point_of_the_default_space_is_a_valid_configuration(data: st.DataObject) -> None:
    # The default space is the documented one: any point of it runs (no setting refused,
    # no agent refusing its settings), so no trial of the default space is wasted.
    settings = base("sma_cross", "momentum", "price_action")
    agents = running(settings)
    space = default_space(settings, agents)
    values = {
        p.key: _draw(p, data.draw(st.floats(0, 1)), data.draw(st.integers(0, 10))) for p in space
    }
    applied = apply(settings, values)  # type: ignore[arg-type]
    for key, value in values.items():
        node: object = applied
        parts = key.split(".")
        if parts[:2] == ["agents", "params"]:
            assert applied.agents.params[parts[2]][parts[3]] == value
            agents[parts[2]]("BTC/USDT", **applied.agents.params[parts[2]])
            continue
        for part in parts:
            node = getattr(node, part)
        assert node == value or float(node) == pytest.approx(value)  # type: ignore[arg-type]


def test_the_documented_default_space_is_the_default_space() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "optimize.md").read_text()
    settings = base("sma_cross", "momentum", "price_action")
    for p in default_space(settings, running(settings)):
        row = f"| `{p.key}` | {p.describe()} |"
        assert row in doc, row
