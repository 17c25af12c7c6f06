"""ConfigMaps as hub/linestore uses them (the waiting line), on the emulator and the real
kube-apiserver: get of a missing one is 404, create then create again is 409, a replace
without resourceVersion wins, one with a stale resourceVersion is 409, and the answers
are the same on both."""

from __future__ import annotations

from conformance_helpers import NAMESPACE

CMS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"


def body(name: str, value: str, rv: str | None = None) -> dict:
    meta = {"name": name, "namespace": NAMESPACE}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"line.json": value}}


async def test_configmap_create_or_replace_as_the_line_store_does(api):
    name = "mig-spawner-line-conformance"
    status, _ = await api.api.request("GET", f"{CMS}/{name}")
    assert status == 404
    status, _ = await api.api.request("PUT", f"{CMS}/{name}", body(name, "0"))
    assert status == 404  # replace does not create
    status, created = await api.api.request("POST", CMS, body(name, "1"))
    assert status == 201, created
    first_rv = created["metadata"]["resourceVersion"]
    status, again = await api.api.request("POST", CMS, body(name, "2"))
    assert status == 409 and again["reason"] == "AlreadyExists", again
    status, replaced = await api.api.request("PUT", f"{CMS}/{name}", body(name, "3"))
    assert status == 200, replaced  # no resourceVersion: unconditional
    assert replaced["data"] == {"line.json": "3"}
    assert replaced["metadata"]["resourceVersion"] != first_rv
    status, stale = await api.api.request("PUT", f"{CMS}/{name}", body(name, "4", first_rv))
    assert status == 409 and stale["reason"] == "Conflict", stale
    status, got = await api.api.request("GET", f"{CMS}/{name}")
    assert status == 200 and got["data"] == {"line.json": "3"}
    status, _ = await api.api.request("DELETE", f"{CMS}/{name}")
    assert status == 200


async def test_a_configmap_over_one_mib_is_422(api):
    """The line's document must stay under the ConfigMap limit; a bigger one is refused."""
    name = "mig-spawner-line-too-big"
    status, answer = await api.api.request("POST", CMS, body(name, "x" * (1024 * 1024 + 1)))
    assert status == 422, (status, str(answer)[:300])
    assert answer["reason"] == "Invalid"
    (cause,) = answer["details"]["causes"]
    assert cause["message"] == "Too long: may not be more than 1048576 bytes", cause
    assert cause["reason"] == "FieldValueTooLong" and cause["field"] == "[]"
    assert answer["message"] == f'ConfigMap "{name}" is invalid: []: {cause["message"]}'


async def test_a_bad_config_key_is_422(api):
    status, answer = await api.api.request(
        "POST",
        CMS,
        {"metadata": {"name": "bad-key"}, "data": {"line json": "{}"}},
    )
    assert status == 422, answer
    (cause,) = answer["details"]["causes"]
    assert cause["field"] == "data[line json]" and "valid config key" in cause["message"]
