"""Operations through a real hub: /hub/metrics, the decision log line, and the GPU slice
page of mig-spawner's service ({base_url}services/mig/, which the hub starts and proxies)."""

from __future__ import annotations

import logging

from hub_harness import pods_of, service_url, spawn, wait_ready
from jupyterhub.tests.utils import async_requests, get_page
from prometheus_client.parser import text_string_to_metric_families


async def scrape(app, cookies) -> dict[tuple[str, tuple], float]:
    r = await get_page("metrics", app, cookies=cookies)
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name.startswith("mig_spawner_"):
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples, name, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total, seen = 0.0, False
    for (n, lab), v in samples.items():
        d = dict(lab)
        if n == name and all(d.get(k) == x for k, x in labels.items()):
            total, seen = total + v, True
    assert seen, f"no sample {name} {labels}"
    return total


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


async def mig_page(app, user: str, query: str = ""):
    """The service's page as ``user`` (their token; the browser test does the OAuth)."""
    token = app.users[user].new_api_token()
    return await async_requests.get(
        service_url(app, query), headers={"Authorization": f"token {token}"}
    )


async def test_metrics_log_lines_and_admin_page(hub):
    app, cluster = await hub(
        team_quotas={"vision": {"compute_slices": 3}, "nlp": {"compute_slices": 4}},
        service=True,
    )
    admin = await app.login_user("admin")
    await app.login_user("bob")
    r = await mig_page(app, "admin")
    assert r.status_code == 200, r.text
    # The hub's series are there once JupyterHub has built a MIGSpawner (the admin's
    # spawn page); its watch starts with it.
    assert (await get_page("spawn", app, cookies=admin)).status_code == 200
    before = await scrape(app, admin)
    assert value(before, "mig_spawner_cluster_view_healthy") == 1

    logs = Lines()
    app.users["bob"].spawner.log.addHandler(logs)
    try:
        assert (await spawn(app, "bob", {"tier": "notebook"})).status_code in (201, 202)
        await wait_ready(app, "bob")
        refused = await spawn(app, "bob", {"tier": "training"}, server="big")
        assert refused.status_code == 403
    finally:
        app.users["bob"].spawner.log.removeHandler(logs)
    (pod,) = pods_of(cluster, user="bob")
    node = pod["spec"]["nodeName"]

    # --- metrics: counters moved by exactly these two decisions; gauges from the state.
    after = await scrape(app, admin)

    def delta(name, **labels):
        try:
            old = value(before, name, **labels)
        except AssertionError:
            old = 0
        return value(after, name, **labels) - old

    assert delta("mig_spawner_decisions_total", outcome="admitted", tier="notebook") == 1
    assert (
        delta("mig_spawner_decisions_total", outcome="refused", code="quota", tier="training") == 1
    )
    assert delta("mig_spawner_decision_seconds_count") == 2
    assert value(after, "mig_spawner_slices_capacity", profile="1g.10gb") == 9
    assert value(after, "mig_spawner_slices_held", profile="1g.10gb", node=node) == 1
    assert value(after, "mig_spawner_slices_free", profile="1g.10gb") == 8
    assert value(after, "mig_spawner_slices_free", profile="3g.40gb", gpu="H100 80GB") == 1
    assert value(after, "mig_spawner_team_usage", team="vision", unit="compute_slices") == 1
    assert value(after, "mig_spawner_team_quota_limit", team="vision", unit="compute_slices") == 3
    assert value(after, "mig_spawner_team_usage", team="nlp", unit="servers") == 0
    assert value(after, "mig_spawner_reservations_in_flight") == 0
    assert value(after, "mig_spawner_nodes", state="usable") == 2
    assert value(after, "mig_spawner_seconds_since_last_watch_event", resource="pods") >= 0

    # --- one grep-able line per decision, with every field.
    decisions = [line for line in logs.lines if line.startswith("decision ")]
    assert len(decisions) == 2, logs.lines
    assert decisions[0].startswith(
        "decision user=bob server=- team=vision tier=notebook requested=1g.10gb "
        f'granted=1g.10gb gpu="H100 80GB" node={node} outcome=admitted code=admitted ms='
    )
    assert " server=big team=vision tier=training requested=3g.40gb granted=- " in decisions[1]
    assert "outcome=refused code=quota" in decisions[1]
    assert 'reason="' in decisions[1] and "team vision's GPU quota has 1 of 3" in decisions[1]

    # --- the service's page: bob's slice, the team bar, the refusal count; 403 for bob.
    html = (await mig_page(app, "admin")).text
    assert f'data-node="{node}"' in html and 'data-user="bob"' in html
    assert 'data-team="vision" data-unit="compute_slices"' in html and "1 of 3" in html
    # one row per (code, tier); the hub's count (one process, one set of series: earlier
    # tests' hubs count too, so other rows may come first)
    rows = [r.split("</tr>", 1)[0] for r in html.split('class="mig-refusal"')[1:]]
    (refusal,) = [r for r in rows if 'data-code="quota" data-tier="training"' in r]
    counted = value(
        after, "mig_spawner_decisions_total", outcome="refused", code="quota", tier="training"
    )
    assert f"<td>{int(counted)}</td>" in refusal
    assert "Cluster view healthy" in html and 'hub/admin">Admin</a>' in html  # hub's nav
    forbidden = await mig_page(app, "bob")
    assert forbidden.status_code == 403
    # issue 19: the reason once (the heading says "Forbidden"), not as heading and text
    assert forbidden.text.count("The GPU slice page is for hub admins") == 1, forbidden.text
    assert "403 : Forbidden" in forbidden.text
    fragment = (await mig_page(app, "admin", "?fragment=1")).text
    assert "<html" not in fragment and 'id="mig-health"' in fragment
    paged = (await mig_page(app, "admin", "?per_page=1")).text
    assert "2 node(s), page 1 of 2" in " ".join(paged.split())
    assert paged.count("data-node=") == 1 and 'id="mig-next"' in paged
    filtered = (await mig_page(app, "admin", "?q=h100-b")).text
    assert 'data-node="h100-b"' in filtered and 'data-node="h100-a"' not in filtered
    bad_page = await mig_page(app, "admin", "?page=abc")
    assert bad_page.status_code == 400
    assert bad_page.text.count("page must be a positive whole number") == 1, bad_page.text
