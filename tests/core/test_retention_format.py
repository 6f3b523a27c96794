"""The stored retention policy file: byte for byte what earlier versions (pydantic's
``model_dump_json(exclude_unset=True, indent=2)``, commit aaa7688) wrote, only the rules a
policy sets (an explicit None included); a malformed file is a clear InvalidInputError."""

from __future__ import annotations

from pathlib import Path

import pytest
from msgspec import UNSET

from casstore import Repository
from casstore.errors import InvalidInputError
from casstore.ops.retention import RetentionPolicy, effective_policy, load_policy, save_policy
from casstore.repo.keys import policy_key

# (rules, the bytes commit aaa7688 stored for them)
WRITTEN_BEFORE = [
    ({"keep_last": 3, "keep_reflog_seconds": 0},
     '{\n  "keep_last": 3,\n  "keep_reflog_seconds": 0.0\n}'),
    ({"keep_within_seconds": 604800.0, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12,
      "keep_hourly": 0},
     '{\n  "keep_within_seconds": 604800.0,\n  "keep_hourly": 0,\n  "keep_daily": 7,\n'
     '  "keep_weekly": 4,\n  "keep_monthly": 12\n}'),
    ({"keep_tags": ("stable", "é☃"), "keep_types": (), "keep_best": "accuracy",
      "keep_best_lower": True},
     '{\n  "keep_best": "accuracy",\n  "keep_best_lower": true,\n  "keep_tags": [\n'
     '    "stable",\n    "é☃"\n  ],\n  "keep_types": []\n}'),
    ({"auto_gc_bytes": None, "auto_gc_grace_seconds": 3600, "auto_gc_interval_seconds": 1e-05},
     '{\n  "auto_gc_bytes": null,\n  "auto_gc_grace_seconds": 3600.0,\n'
     '  "auto_gc_interval_seconds": 0.00001\n}'),
    ({"keep_within_seconds": 1e20, "keep_reflog_seconds": 2.5e-07, "auto_gc_bytes": 10**12},
     '{\n  "keep_within_seconds": 1e+20,\n  "keep_reflog_seconds": 2.5e-7,\n'
     '  "auto_gc_bytes": 1000000000000\n}'),
]


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = Repository(str(tmp_path / "store"))
    repo.init()
    return repo


@pytest.mark.parametrize("rules, before", WRITTEN_BEFORE)
def test_the_policy_file_is_byte_identical_to_before(repo: Repository, rules: dict,
                                                     before: str):
    save_policy(repo.store, None, RetentionPolicy(keep_last=1))  # "m" may set only auto-gc
    save_policy(repo.store, "m", RetentionPolicy(**rules))
    raw = repo.store.get(policy_key("m"))
    assert raw == before.encode()
    loaded = load_policy(repo.store, "m")
    assert loaded is not None and loaded.to_file() == raw and loaded.given().keys() == rules.keys()


def test_unset_rules_stay_unset_through_merge_and_store(repo: Repository):
    merged = RetentionPolicy(keep_last=3, auto_gc_bytes=5).merged(
        RetentionPolicy(auto_gc_bytes=None, keep_tags=("a",)))
    assert merged.to_file() == (
        b'{\n  "keep_last": 3,\n  "keep_tags": [\n    "a"\n  ],\n  "auto_gc_bytes": null\n}')
    assert merged.keep_daily is UNSET and merged.get("keep_daily") is None
    assert merged.get("auto_gc_bytes") is None and merged.get("keep_types") == ()
    assert RetentionPolicy().to_file() == b"{}" and RetentionPolicy().is_empty()
    assert not RetentionPolicy(keep_last=0).is_empty()  # 0 is a rule, as before


@pytest.mark.parametrize("stored, says", [
    (b'{"keep_last": 3, "keep_forever": true}', "unknown field `keep_forever`"),
    (b'{"keep_last": "3"}', "Expected `int | null`, got `str` - at `$.keep_last`"),
    (b'{"keep_last": -1}', "Expected `int` >= 0 - at `$.keep_last`"),
    (b'{"keep_reflog_seconds": -0.5}', "Expected `float` >= 0.0 - at `$.keep_reflog_seconds`"),
    (b'{"keep_tags": "stable"}', "Expected `array`, got `str` - at `$.keep_tags`"),
    (b'[1]', "Expected `object`, got `array`"),
    (b'{"keep_last": 3', "truncated"),
])
def test_a_malformed_stored_policy_is_a_clear_error(repo: Repository, stored: bytes, says: str):
    repo.store.put(policy_key("m"), stored)
    with pytest.raises(InvalidInputError, match="stored retention policy for m is invalid") as e:
        load_policy(repo.store, "m")
    assert says in str(e.value)
    with pytest.raises(InvalidInputError, match="stored retention policy for m is invalid"):
        effective_policy(repo.store, "m", RetentionPolicy(keep_last=1))  # what GC applies


def test_a_constructed_policy_is_checked_before_use_or_store(repo: Repository):
    bad = RetentionPolicy(keep_last=-1)  # construction does not check; storing and GC do
    with pytest.raises(InvalidInputError, match=r"invalid retention policy.*keep_last"):
        save_policy(repo.store, None, bad)
    assert load_policy(repo.store, None) is None
    with pytest.raises(InvalidInputError, match=r"invalid retention policy.*keep_last"):
        effective_policy(repo.store, "m", bad)  # what GC applies, override last
