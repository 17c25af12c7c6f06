"""A crowd in the waiting line: many users at once, random stops and cancels (issue 20, 11).

All spawns are POSTed at once (aiohttp, really concurrent); then, at random (seeded),
running servers are stopped and waiting spawns cancelled (DELETE), both over HTTP and
several at a time, until every spawn has ended. Throughout: no node holds more slices than
it has, no team more than its quota; at the end: the admissions of each team came in the
order its members asked (FIFO within a team), every spawn that waited left the line
(admitted, cancelled or refused), and the line is empty.

200 users on the emulator; 24 on the real control plane (its API server, scheduler and
node agent on this 2-core machine start a pod in about a second, so 200 would take many
minutes there).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict

import aiohttp
import pytest
from hub_harness import H100, count_reservations_in_flight
from jupyterhub.tests.utils import auth_header, public_url, ujoin
from test_waiting import until

from mig_spawner.core import admission
from mig_spawner.core.pods import NODE_ANNOTATION, TEAM_ANNOTATION

pytestmark = pytest.mark.hub

TEAMS = ("t0", "t1", "t2", "t3")
QUOTA = 8  # compute slices per team; 4 teams x 8 > the 21 (or 7) slices: both can bite


@pytest.fixture(params=[("emulator", 200, 3), ("real", 24, 1)], ids=["emulator", "real"])
def crowd(request):
    """(hub factory, plane, users, nodes): 200 users on the emulator, 24 on the real plane."""
    plane = request.param[0]
    return request.getfixturevalue("hub" if plane == "emulator" else "real_hub"), *request.param


async def test_a_crowd_waits_fairly_and_every_wait_ends(crowd, monkeypatch):
    make, plane, users, nodes = crowd
    names = [f"user{i:03d}" for i in range(users)]
    teams = {team: names[i :: len(TEAMS)] for i, team in enumerate(TEAMS)}
    spec = {
        "nodes": [
            {"name": f"h{i}", "gpu": H100, "strategy": "mixed", "mig": [["1g.10gb"] * 7]}
            for i in range(nodes)
        ]
    }
    tiers = {"notebook": {"display_name": "1g notebook", "fallback": False, "max_wait": 600}}
    app, cluster = await make(
        spec=spec,
        teams=teams,
        tiers=tiers,
        team_quotas={team: {"compute_slices": QUOTA} for team in TEAMS},
        extra={
            # every waiting spawn is a pending spawn for JupyterHub (docs/concepts.md)
            "JupyterHub": {
                "concurrent_spawn_limit": 2 * users,
                "tornado_settings": {"slow_spawn_timeout": 0},
            },
            "KubeSpawner": {"start_timeout": 90, "http_timeout": 90},
        },
    )
    line = app.users[names[0]].spawners[""].waiting_line()
    in_flight = count_reservations_in_flight(monkeypatch)
    admitted: list[tuple[str, float, str]] = []  # (team, requested_at, key), in order
    decide = admission.admit

    def recording(request_, policy, state, *, pod_key):
        decision = decide(request_, policy, state, pod_key=pod_key)
        place = line.line.get(pod_key)
        if decision.admitted and place is not None:
            admitted.append((place.team, place.requested_at, pod_key))
        return decision

    monkeypatch.setattr(admission, "admit", recording)
    longest = [0]
    line.subscribe(lambda doc: longest.__setitem__(0, max(longest[0], len(doc["places"]))))

    results, requests_in_flight = await post_all(app, names)
    assert requests_in_flight > 1  # the POSTs were in flight together
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {201, 202, 403}, results
    for _, status, body in results:
        if status == 403:
            assert "quota" in body["message"], body
    assert statuses[202] > 7 * nodes, statuses  # more asked than fit: the rest wait
    # several waited at once: with slow_spawn_timeout 0 the POSTs are answered before their
    # spawns decide, so on a loaded machine the line may fill only after the last answer
    await until(lambda: longest[0] > 1, 60, "several waiting at once")

    rng = random.Random(20)
    headers = {**auth_header(app.db, "admin"), "Sec-Fetch-Mode": "cors"}
    base = public_url(app, path="hub")
    deleted = 0
    deadline = time.monotonic() + (420 if plane == "emulator" else 240)
    connector = aiohttp.TCPConnector(limit=50, force_close=True)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def delete(user):
            async with http.delete(ujoin(base, "api", "users", user, "server")) as r:
                assert r.status in (202, 204, 400), await r.text()  # 400: it stopped already

        while True:
            check_capacity_and_quota(cluster, nodes)
            spawners = [app.users[name].spawners[""] for name in names]
            pending = [s for s in spawners if s.pending == "spawn"]
            if not pending and not line.line:
                break
            assert time.monotonic() < deadline, (len(pending), len(line.line))
            ready = [s.user.name for s in spawners if s.ready and not s.pending]
            waiting = [p.user for p in line.line.places()]
            picks = rng.sample(ready, min(len(ready), rng.randint(1, 4)))
            picks += rng.sample(waiting, min(len(waiting), rng.randint(0, 2)))
            deleted += len(picks)
            await asyncio.gather(*(delete(user) for user in picks))
            await asyncio.sleep(rng.uniform(0.05, 0.4))
    check_capacity_and_quota(cluster, nodes)

    assert max(in_flight) > 1, in_flight  # admitted concurrently
    assert deleted > 0
    # FIFO within a team: each team's admissions came in the order its members asked
    by_team: dict[str, list[float]] = defaultdict(list)
    for team, requested_at, _ in admitted:
        by_team[team].append(requested_at)
    for team, times in by_team.items():
        assert times == sorted(times), team
    assert len(admitted) > 7 * nodes  # the line admitted many, not only the first ones
    # every wait ended: the line is empty and nothing is left reserved
    assert len(line.line) == 0
    view = app.users[names[0]].spawners[""].cluster_view()
    starting = {s.pod_key for n in names for s in [app.users[n].spawners[""]] if s.pending}
    assert set(view.state.reservations) <= starting


async def post_all(app, users: list[str]) -> tuple[list[tuple[str, int, dict]], int]:
    """POST every user's server at once over real HTTP; ``([(user, status, body)], the most
    requests in flight together)``. A fresh connection per request, at most 50 open: with
    reused keep-alive connections a loaded hub may close one under a request."""
    headers = {**auth_header(app.db, "admin"), "Sec-Fetch-Mode": "cors"}
    base = public_url(app, path="hub")
    in_flight, most = 0, 0
    connector = aiohttp.TCPConnector(limit=50, force_close=True)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def one(user):
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                url = ujoin(base, "api", "users", user, "server")
                async with http.post(url, json={"tier": "notebook"}) as r:
                    return user, r.status, await r.json(content_type=None)
            finally:
                in_flight -= 1

        return list(await asyncio.gather(*(one(u) for u in users))), most


def check_capacity_and_quota(cluster, nodes: int) -> None:
    """No node holds more 1g.10gb than its 7, no team more than its quota (the API's pods)."""
    per_node: Counter = Counter()
    per_team: Counter = Counter()
    for pod in cluster.pods:
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        annotations = pod["metadata"].get("annotations") or {}
        node = pod["spec"].get("nodeName") or annotations.get(NODE_ANNOTATION)
        per_node[node] += 1
        per_team[annotations.get(TEAM_ANNOTATION)] += 1
    assert all(n <= 7 for n in per_node.values()), per_node
    assert set(per_node) <= {f"h{i}" for i in range(nodes)}, per_node
    assert all(n <= QUOTA for n in per_team.values()), per_team
