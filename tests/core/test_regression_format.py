"""Regression and watch policy files: a malformed one is one clear InvalidInputError naming
the file, the key and the problem, followed by the expected format."""

from __future__ import annotations

from pathlib import Path

import pytest

from casstore.errors import InvalidInputError
from casstore.ops.regression import MetricRule, RegressionPolicy, WatchPolicy


@pytest.mark.parametrize("text, says", [
    ('{"rules": [{"metric": "x"}], "window": 5}', "(window: unknown field)"),
    ('{"rules": [{"metric": "x", "tolerance": 1}]}', "(rules.0.tolerance: unknown field)"),
    ('{"rules": [{"metric": 3}]}', "(rules.0.metric: Expected `str`, got `int`)"),
    ('{"rules": [{"metric": "x", "threshold": "1"}]}',
     "(rules.0.threshold: Expected `float | null`"),
    ('{"rules": [{"metric": "x", "threshold": -1}]}',
     "(rules.0.threshold: Expected `float` >= 0.0)"),
    ('{"rules": [{"metric": "x", "direction": "up"}]}',
     "(rules.0.direction: Input should be 'higher' or 'lower')"),
    ('{"rules": [{"threshold": 1}]}', "(rules.0.metric: Field required)"),
    ('{"rules": []}', "(rules: Expected `array` of length >= 1)"),
    ('{}', "(rules: Field required)"),
    ('[]', "(Expected `object`, got `array`)"),
])
def test_a_malformed_regression_policy_is_one_clear_error(tmp_path: Path, text: str, says: str):
    path = tmp_path / "policy.json"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as e:
        RegressionPolicy.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path} is not a valid regression policy (") and says in msg
    assert msg.endswith("(only metric is required)") and "\n" not in msg


@pytest.mark.parametrize("text, says", [
    ('{"rules": [{"metric": "x"}], "window": "soon"}', "(window: bad duration 'soon'"),
    ('{"rules": [{"metric": "x"}], "window": "0s"}', "(window: must be > 0, got 0)"),
    ('{"rules": [{"metric": "x"}], "window": 0}', "(window: Expected `float` > 0.0)"),
    ('{"rules": [{"metric": "x"}], "window": true}',
     "(window: Expected `float | str`, got `bool`)"),
    ('{"rules": [{"metric": "x"}], "min_requests": -1}', "(min_requests: Expected `int` >= 0)"),
    ('{"rules": [{"metric": "x"}], "min_requests": 1.5}', "(min_requests: Expected `int`, got"),
    ('{"rules": [{"metric": "x"}], "max_attempts": 0}', "(max_attempts: Expected `int` >= 1)"),
    ('{"rules": [{"metric": "x"}], "sustain": -1}', "(sustain: Expected `float` >= 0.0)"),
    ('{"rules": [{"metric": "x"}], "extra": 1}', "(extra: unknown field)"),
])
def test_a_malformed_watch_policy_is_one_clear_error(text: str, says: str):
    with pytest.raises(InvalidInputError) as e:
        WatchPolicy.parse(text, "watch.json")
    msg = str(e.value)
    assert msg.startswith("watch.json is not a valid watch policy (") and says in msg


def test_durations_and_numbers_read_as_seconds():
    p = WatchPolicy.parse('{"rules": [{"metric": "e", "max": 1}], "window": "2m", "sustain": 5}')
    assert (p.window, p.sustain) == (120.0, 5.0) and isinstance(p.sustain, float)
    assert p.rules == (MetricRule(metric="e", max=1.0),)
    assert WatchPolicy(rules=p.rules, window="1h", sustain=2).window == 3600.0  # as parse does
    with pytest.raises(InvalidInputError, match="is not JSON"):
        RegressionPolicy.parse("{nope", "p.json")
