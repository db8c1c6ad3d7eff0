"""Telling a missing pool from a busy one, from the task states a run can read."""

from __future__ import annotations

from dag_utils.pools import all_started, holders, missing_pool_message, task_of, waiting_pools

POOL_OF = {"plan_shards": "cdn_api", "fetch_shard": "cdn_api", "publish_window": "cdn_bq_writes"}


def test_mapped_state_keys_name_their_task() -> None:
    assert task_of("fetch_shard_12", POOL_OF) == "fetch_shard"
    assert task_of("plan_shards", POOL_OF) == "plan_shards"
    assert task_of("fetch_shard_x", POOL_OF) is None
    assert task_of("watch_pools", POOL_OF) is None


def test_a_task_scheduled_on_a_pool_waits_for_it() -> None:
    states = {"plan_shards": "scheduled", "fetch_shard": None, "publish_window": None}
    assert waiting_pools(states, POOL_OF) == {"cdn_api", "cdn_bq_writes"}
    later = {"plan_shards": "success", "fetch_shard_0": "running", "publish_window": None}
    assert waiting_pools(later, POOL_OF) == {"cdn_bq_writes"}


def test_the_watch_ends_once_every_pooled_task_has_started_or_will_never_need_a_slot() -> None:
    assert not all_started({}, POOL_OF)
    assert not all_started({"plan_shards": "running", "publish_window": None}, POOL_OF)
    assert not all_started({"plan_shards": "up_for_retry", "publish_window": "running"}, POOL_OF)
    assert all_started({"plan_shards": "failed", "publish_window": "upstream_failed"}, POOL_OF)
    assert all_started(
        {"plan_shards": "success", "fetch_shard_0": "success", "publish_window": "queued"}, POOL_OF
    )


def test_the_message_names_the_pool_and_the_fix() -> None:
    message = missing_pool_message("cdn_api", ["plan_shards"], 301)
    assert "plan_shards waited 301 s for pool 'cdn_api'" in message
    assert "make provision" in message


def test_a_pool_shared_with_the_transform_counts_its_holders() -> None:
    shared = {"cdn_bq_writes": {"cdn_log_transform": ("transform_window",)}}
    assert holders("cdn_bq_writes", "cdn_raw_ingest", POOL_OF, shared) == {
        "cdn_raw_ingest": ["publish_window"],
        "cdn_log_transform": ["transform_window"],
    }
    assert holders("cdn_api", "cdn_raw_ingest", POOL_OF, shared) == {
        "cdn_raw_ingest": ["fetch_shard", "plan_shards"]
    }
