"""The simulator serves the contract of ../shared/cdn-api.md and counts what it sees."""

from __future__ import annotations

import requests

from tests.conftest import MINUTE, TEST_SIM, TOKEN
from tools.cdn_api_simulator import true_metrics
from tools.local_servers import CdnApiSimulator


def get(
    sim: CdnApiSimulator, endpoint: str, token: str = TOKEN, **params: object
) -> requests.Response:
    return requests.get(
        f"{sim.url}/v2/cdn/{endpoint}",
        params=params,
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )


def test_contract_shapes_and_deterministic_values(sim: CdnApiSimulator) -> None:
    domains = get(sim, "domain_list").json()
    assert domains["rtcode"] == "200" and domains["metric"] == ["domain_list"]
    assert domains["data"] == TEST_SIM.domain_list()
    domain = domains["data"][0]
    body = get(sim, "status", date=MINUTE, domain_name=domain, step="1m", show="detail").json()
    assert body["metric"] == [
        "date",
        "status_2xx",
        "status_3xx",
        "status_4xx",
        "status_5xx",
        "error_ratio",
    ]
    assert body["data"] == [[MINUTE, *true_metrics(domain, MINUTE, "status", TEST_SIM).values()]]
    traffic = true_metrics(domain, MINUTE, "traffic", TEST_SIM)
    status = true_metrics(domain, MINUTE, "status", TEST_SIM)
    cache = true_metrics(domain, MINUTE, "cache", TEST_SIM)
    assert sum(v for k, v in status.items() if k != "error_ratio") == traffic["requests"]
    assert cache["hit"] + cache["miss"] == traffic["requests"]


def test_wrong_token_bad_date_and_counters(sim: CdnApiSimulator) -> None:
    rejected = get(sim, "traffic", token="nope")
    assert rejected.status_code == 401 and rejected.json()["rtcode"] == "401"
    assert (
        get(
            sim, "traffic", date=MINUTE + 1, domain_name="d00000.example.net", step="1m"
        ).status_code
        == 400
    )
    stats = sim.stats()
    assert stats["calls"] == 2 and stats["by_status"] == {"401": 1, "400": 1}
    assert stats["max_in_flight"] == 1


def test_an_injected_spike_changes_only_its_domain_and_minutes(sim: CdnApiSimulator) -> None:
    domain, other = TEST_SIM.domain_list()[:2]
    sim.configure(spikes=[f"{domain}:{MINUTE}:2:5xx", f"{other}:{MINUTE}:1:cache"])
    spiked = TEST_SIM.updated({"spikes": [f"{domain}:{MINUTE}:2:5xx", f"{other}:{MINUTE}:1:cache"]})
    for minute, hit in ((MINUTE, True), (MINUTE + 60, True), (MINUTE + 120, False)):
        body = get(sim, "status", date=minute, domain_name=domain, step="1m", show="detail").json()
        served = dict(zip(body["metric"], body["data"][0], strict=True))
        requests_ = true_metrics(domain, minute, "traffic", spiked)["requests"]
        assert (served["status_5xx"] == requests_ * 30 // 100) is hit
        assert served["status_5xx"] == true_metrics(domain, minute, "status", spiked)["status_5xx"]
    assert true_metrics(other, MINUTE, "cache", spiked)["hit_ratio"] < 0.11
    assert true_metrics(other, MINUTE + 60, "cache", spiked) == true_metrics(
        other, MINUTE + 60, "cache", TEST_SIM
    )
    bad = requests.post(f"{sim.url}/_sim/config", json={"spikes": ["x:1:2:melt"]}, timeout=10)
    assert bad.status_code == 400
