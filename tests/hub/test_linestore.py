"""hub/linestore.py: the waiting line kept in a ConfigMap, on the emulator and the real plane.

The line object is line-core's (hub/waiting.py); here a test double with exactly the
contract's attributes (``subscribe``, ``kept``, ``history``) stands in for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from hub_harness import TWO_H100
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from realk8s import HUB_NAMESPACE

from mig_spawner.core import linedoc
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_spec
from mig_spawner.hub import linestore

NAME = "mig-spawner-line-jupyterhub"


class Line:
    """The contract's line object, nothing more: subscribe, kept, history."""

    def __init__(self):
        self.kept: dict[str, linedoc.KeptPlace] = {}
        self.history: dict[str, list[float]] = {}
        self._callbacks = []

    def subscribe(self, callback):
        self._callbacks.append(callback)

    def changed(self, doc):
        for callback in self._callbacks:
            callback(doc)


def document(n_places=2, *, now=None, history=None, serial=0):
    now = time.time() if now is None else now
    places = [
        {
            "key": f"{HUB_NAMESPACE}/jupyter-u{i}",
            "user": f"u{i}",
            "server_name": "",
            "tier": "notebook",
            "team": "vision",
            "groups": ["vision"],
            "requested_at": now - 100 + i,
            "deadline": now + 1800,
            "position": i + 1,
            "eta_seconds": None if i else 300.0,
        }
        for i in range(n_places)
    ]
    return {
        "version": 1,
        "hub": "jupyterhub",
        "saved_at": now + serial,
        "places": places,
        "history": history if history is not None else {"notebook": [3600.0, 1200.0]},
    }


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == level]


def logger(name):
    out = logging.getLogger(f"test.linestore.{name}")
    out.setLevel(logging.DEBUG)
    out.propagate = False
    handler = Records()
    out.handlers = [handler]
    return out, handler


@pytest.fixture
async def emulator():
    cluster = EmulatedCluster(load_cluster_spec(TWO_H100), kubelet="stub")
    await cluster.__aenter__()
    clients = []

    def api(url=None):
        cfg = Configuration()
        cfg.host = url or cluster.url
        client = ApiClient(configuration=cfg)
        clients.append(client)
        return CoreV1Api(client)

    cluster.client_api = api
    yield cluster
    for client in clients:
        await client.close()
    await cluster.__aexit__(None, None, None)


def stored(cluster, namespace=HUB_NAMESPACE):
    return cluster.store.find("configmaps", namespace, NAME)


def configmap_writes(cluster):
    return [(m, p) for m, p, _ in cluster.requests if "configmaps" in p and m in ("PUT", "POST")]


async def attach(line, core_api, log, **options):
    """``linestore.attach`` for the hub ``jupyterhub`` in the hub's namespace."""
    return await linestore.attach(
        line, core_api=core_api, namespace=HUB_NAMESPACE, hub_id="jupyterhub", logger=log, **options
    )


async def test_attach_saves_and_a_restarted_hub_keeps_the_places(emulator):
    log, records = logger("roundtrip")
    line = Line()
    store = await attach(
        line,
        emulator.client_api(),
        log,
    )
    assert line.kept == {} and line.history == {}  # nothing saved yet
    doc = document(2)
    line.changed(doc)
    assert await store.flush(10)
    cm = stored(emulator)
    assert json.loads(cm["data"]["line.json"]) == doc
    assert cm["metadata"]["annotations"] == {"mig-spawner/hub": "jupyterhub"}
    await store.close()

    # the hub restarts: a new line, loaded from the cluster
    again = Line()
    again.history["notebook"] = [60.0]  # gathered before attach: newer than the saved ones
    now = time.time()
    store2 = await attach(again, emulator.client_api(), log, grace=600, now=lambda: now)
    assert set(again.kept) == {f"{HUB_NAMESPACE}/jupyter-u0", f"{HUB_NAMESPACE}/jupyter-u1"}
    kept = again.kept[f"{HUB_NAMESPACE}/jupyter-u1"]
    assert kept.position == 2 and kept.until == now + 600
    assert kept.requested_at == doc["places"][1]["requested_at"]
    assert (
        linedoc.restart_message(kept, now)
        == "the hub restarted: your place (#2) is kept for 10 min - press Start"
    )
    assert again.history == {"notebook": [3600.0, 1200.0, 60.0]}
    assert any("2 place(s) kept" in m for m in records.at(logging.INFO))
    await store2.close()


async def test_saves_are_coalesced_one_in_flight_newest_wins(emulator):
    emulator.inject_faults(
        path_prefix="/api/v1/namespaces/jhub/configmaps",
        status=None,
        count=None,
        delay=0.2,
        method="PUT",
    )
    emulator.inject_faults(
        path_prefix="/api/v1/namespaces/jhub/configmaps",
        status=None,
        count=None,
        delay=0.2,
        method="POST",
    )
    log, _ = logger("coalesce")
    line = Line()
    store = await attach(
        line,
        emulator.client_api(),
        log,
        min_interval=0.5,
    )
    started = time.monotonic()
    docs = [document(1 + i % 5, serial=i) for i in range(60)]
    for doc in docs:  # 60 changes over ~1.2 s, while writes take 0.2 s each
        line.changed(doc)
        await asyncio.sleep(0.02)
    assert await store.flush(10)
    elapsed = time.monotonic() - started
    assert store.max_in_flight == 1
    assert 2 <= store.writes <= elapsed / 0.5 + 2, (store.writes, elapsed)
    # one request per write: the load found no ConfigMap, so the first write is a POST
    assert [m for m, _ in configmap_writes(emulator)] == ["POST"] + ["PUT"] * (store.writes - 1)
    assert json.loads(stored(emulator)["data"]["line.json"]) == docs[-1]
    assert store.last_saved == docs[-1]
    await store.close()


async def test_api_errors_are_logged_once_per_kind_and_retried(emulator):
    log, records = logger("errors")
    line = Line()
    store = await attach(
        line,
        emulator.client_api(),
        log,
        min_interval=0.01,
        max_backoff=0.2,
    )
    emulator.inject_faults(path_prefix="/api/v1/namespaces/jhub/configmaps", status=500, count=6)
    line.changed(document(1))
    line.changed(document(3, serial=1))
    assert await store.flush(15)
    assert store.failures >= 3  # each write tries PUT then POST; 6 answers were 500
    warnings = records.at(logging.WARNING)
    assert len(warnings) == 1 and "500" in warnings[0] and "retrying" in warnings[0], warnings
    assert any("saved in ConfigMap jhub/" in m and "again" in m for m in records.at(logging.INFO))
    assert len(json.loads(stored(emulator)["data"]["line.json"])["places"]) == 3
    await store.close()


async def test_an_unreachable_api_never_raises(emulator):
    log, records = logger("down")
    line = Line()
    store = await attach(
        line,
        emulator.client_api("http://127.0.0.1:9"),  # nothing listens there
        log,
        min_interval=0.01,
        max_backoff=0.05,
        request_timeout=1,
    )
    assert line.kept == {}
    for i in range(5):
        line.changed(document(1, serial=i))
    assert not await store.flush(0.5)  # still retrying, quietly
    assert store.failures >= 2 and store.unread
    warnings = records.at(logging.WARNING)
    assert len(warnings) == 1 and "cannot read" in warnings[0], warnings  # once, not per try
    await store.close(timeout=0.1)


async def test_a_line_not_read_at_start_is_read_before_the_first_write(emulator):
    """A transient error at start-up must not let the first save replace the saved line:
    the store reads it first, hands its places and history to the line, then writes."""
    saved = document(2, history={"notebook": [100.0, 200.0]})
    emulator.store.create(
        "configmaps",
        HUB_NAMESPACE,
        linedoc.configmap_body(saved, hub="jupyterhub", namespace=HUB_NAMESPACE),
    )
    emulator.inject_faults(
        path_prefix=f"/api/v1/namespaces/jhub/configmaps/{NAME}", method="GET", count=2
    )
    log, _ = logger("late")
    line = Line()
    store = await attach(
        line,
        emulator.client_api(),
        log,
        min_interval=0.01,
        max_backoff=0.05,
    )
    assert line.kept == {} and store.unread  # the first read failed
    line.history["notebook"] = [5.0]  # a session ended since
    new = document(1, history={"notebook": [5.0]})
    new["places"][0]["key"] = f"{HUB_NAMESPACE}/jupyter-zed"
    line.changed(new)
    assert await store.flush(10)
    assert set(line.kept) == {p["key"] for p in saved["places"]}  # taken in late
    assert line.history == {"notebook": [100.0, 200.0, 5.0]}
    written = json.loads(stored(emulator)["data"]["line.json"])
    assert written["history"] == {"notebook": [100.0, 200.0, 5.0]}
    assert [p["key"] for p in written["places"]] == [f"{HUB_NAMESPACE}/jupyter-zed"]
    assert store.failures == 1 and store.writes == 1
    await store.close()


@pytest.mark.parametrize(
    ("data", "kept_key", "kept_value"),
    [
        ({"line.json": '{"version": 1, "hub": '}, linedoc.REJECTED_KEY, '{"version": 1, "hub": '),
        ({"line.json": json.dumps({**document(1), "version": 7})}, linedoc.REJECTED_KEY, None),
        ({"settings.yaml": "a: 1"}, "settings.yaml", "a: 1"),  # a foreign ConfigMap
    ],
)
async def test_a_garbled_or_foreign_configmap_is_logged_once_and_kept(
    emulator, data, kept_key, kept_value
):
    emulator.store.create(
        "configmaps",
        HUB_NAMESPACE,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME}, "data": data},
    )
    log, records = logger("garbled")
    line = Line()
    store = await attach(
        line,
        emulator.client_api(),
        log,
    )
    assert line.kept == {} and line.history == {}
    (error,) = records.at(logging.ERROR)
    assert f"ConfigMap {HUB_NAMESPACE}/{NAME}" in error and "empty line" in error
    line.changed(document(1))
    assert await store.flush(10)
    cm = stored(emulator)
    assert json.loads(cm["data"]["line.json"]) == document(
        1, now=json.loads(cm["data"]["line.json"])["saved_at"]
    )
    assert cm["data"][kept_key] == (kept_value or data["line.json"])
    await store.close()


async def test_a_hub_id_that_makes_no_name_is_logged_not_raised(emulator):
    log, records = logger("badid")
    line = Line()
    assert (
        await linestore.attach(
            line,
            core_api=emulator.client_api(),
            namespace=HUB_NAMESPACE,
            hub_id="Bad Hub",
            logger=log,
        )
        is None
    )
    assert "hub_id" in records.at(logging.ERROR)[0]
    assert line._callbacks == []


async def test_read_line_for_the_service_and_cli(emulator):
    api = emulator.client_api()
    doc, problem = await linestore.read_line(api, namespace=HUB_NAMESPACE, hub_id="jupyterhub")
    assert problem == "" and doc.places == ()
    store = linestore.LineStore(api, namespace=HUB_NAMESPACE, hub_id="jupyterhub")
    store.save(document(2))
    assert await store.flush(5)
    doc, problem = await linestore.read_line(api, namespace=HUB_NAMESPACE, hub_id="jupyterhub")
    assert problem == "" and [p.user for p in doc.places] == ["u0", "u1"]
    emulator.store.replace(
        "configmaps",
        HUB_NAMESPACE,
        NAME,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME},
            "data": {"line.json": "[]"},
        },
    )
    doc, problem = await linestore.read_line(api, namespace=HUB_NAMESPACE, hub_id="jupyterhub")
    assert doc is None and "unreadable" in problem and "not a JSON object" in problem


# --------------------------------------------------------------------------- real plane


def _real_api(plane, service_account):
    cfg = Configuration()
    cfg.host = plane.url
    cfg.ssl_ca_cert = str(plane.ca)
    cfg.api_key = {"BearerToken": plane.service_account_token(HUB_NAMESPACE, service_account)}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    client = ApiClient(configuration=cfg)
    return CoreV1Api(client), client


async def test_real_plane_round_trip_as_the_hubs_service_account(control_plane):
    """With the Z2JH hub Role and helm-values/rbac/ applied (realk8s), the hub's own
    identity can create, replace and read the line; a restart keeps the places."""
    control_plane.request("DELETE", f"/api/v1/namespaces/{HUB_NAMESPACE}/configmaps/{NAME}")
    api, client = _real_api(control_plane, "hub")
    log, records = logger("real")
    try:
        line = Line()
        store = await attach(
            line,
            api,
            log,
            min_interval=0.05,
        )
        for i in range(1, 4):
            line.changed(document(i, serial=i))
            assert await store.flush(10), records.at(logging.WARNING)
        assert store.writes == 3 and store.failures == 0, records.at(logging.WARNING)
        cm = control_plane.get(f"/api/v1/namespaces/{HUB_NAMESPACE}/configmaps/{NAME}")
        assert len(json.loads(cm["data"]["line.json"])["places"]) == 3
        again = Line()
        await attach(again, api, log)
        assert len(again.kept) == 3 and again.history == {"notebook": [3600.0, 1200.0]}
        assert records.at(logging.WARNING) == [] and records.at(logging.ERROR) == []
    finally:
        await client.close()
        control_plane.request("DELETE", f"/api/v1/namespaces/{HUB_NAMESPACE}/configmaps/{NAME}")


async def test_real_plane_without_the_role_logs_403_once(control_plane):
    """The namespace's default ServiceAccount has no Role on configmaps: every call is
    refused, logged once per kind, and nothing raises."""
    api, client = _real_api(control_plane, "default")
    log, records = logger("forbidden")
    try:
        line = Line()
        store = await attach(
            line,
            api,
            log,
            min_interval=0.01,
            max_backoff=0.05,
        )
        for i in range(3):
            line.changed(document(1, serial=i))
        assert not await store.flush(1.0)
        assert store.failures >= 2 and store.writes == 0
        warnings = records.at(logging.WARNING)
        assert len(warnings) == 1, warnings  # once, however often it tried
        assert "403" in warnings[0] and "needs get on configmaps" in warnings[0]
        await store.close(timeout=0.1)
    finally:
        await client.close()


async def test_a_line_too_big_for_a_configmap_is_trimmed_then_refused_once(emulator):
    """Session history gives way first (the newest kept); places that alone exceed the
    ConfigMap's 1 MiB are not written (logged once), and the hub goes on."""
    log, records = logger("big")
    line = Line()
    store = await attach(
        line,
        emulator.client_api(),
        log,
        min_interval=0.01,
    )
    big_history = {f"t{i}": [float(j) + 0.123456789 for j in range(500)] for i in range(200)}
    line.changed(document(3, history=big_history))
    assert await store.flush(10)
    written = json.loads(stored(emulator)["data"]["line.json"])
    assert len(written["places"]) == 3
    assert 0 < len(written["history"]["t0"]) < 500 and written["history"]["t0"][-1] == 499.123456789
    assert any("trimmed" in m for m in records.at(logging.INFO))
    huge = document(5000)
    line.changed(huge)
    line.changed(document(5001))
    assert await store.flush(10)
    warnings = records.at(logging.WARNING)
    assert len(warnings) == 1 and "do not fit in a ConfigMap" in warnings[0], warnings
    assert (
        len(json.loads(stored(emulator)["data"]["line.json"])["places"]) == 3
    )  # the last that fit
    line.changed(document(1))
    assert await store.flush(10)
    assert len(json.loads(stored(emulator)["data"]["line.json"])["places"]) == 1
    await store.close()
