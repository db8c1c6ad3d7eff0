"""A short chaos run: every fault and crash at once, three windows, under a real scheduler."""

from __future__ import annotations

import pytest

from tools import chaos


@pytest.mark.timeout(900)  # three crashes, one waiting out a 60 s heartbeat timeout
def test_with_every_fault_on_nothing_is_wrong_duplicated_lost_unreported_late_or_leaked(
    tmp_path, metadata_db
) -> None:
    result = chaos.run(
        windows=3, domains=6, horizon_min=5, home=tmp_path / "chaos", database=metadata_db
    )
    assert result["stored wrong"] == 0
    assert result["duplicated"] == 0
    assert result["lost unreported (must be 0)"] == 0
    assert result["leaks"] == []
    assert result["crashes recovered"]  # every killed task ended in success
    assert result["stored correct (complete, = truth)"] > 0
    assert result["BigQuery jobs failed by injection"] == 1
    assert result["dashboard rows behind raw (must be 0)"] == 0
    assert result["dashboard complete rows != truth (must be 0)"] == 0
    assert result["domains named in messages that were only late (must be 0)"] == 0
    # two incidents (a broken domain, a 5xx spike), a catch-up summary at most: each check
    # says what it has in one message
    assert len(result["messages"]) <= 3
