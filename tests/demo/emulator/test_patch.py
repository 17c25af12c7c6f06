"""The emulated API server's patches (strategic merge, JSON patch), on their own."""

from __future__ import annotations

import pytest

from mig_spawner.demo.emulator import ApiError
from mig_spawner.demo.emulator.patch import apply_patch, json_patch, strategic_merge_patch


def test_strategic_merge_patch_merges_lists_by_key():
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "1"},
            ],
            "tolerations": [{"key": "t"}],
        },
        "metadata": {"finalizers": ["f1"]},
    }
    patched = strategic_merge_patch(
        pod,
        {
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                ],
                "tolerations": [{"key": "u"}],
            },
            "metadata": {"finalizers": ["f2"]},
        },
    )
    assert patched["spec"]["containers"] == [
        {
            "name": "a",
            "image": "1",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
        }
    ]
    assert patched["spec"]["tolerations"] == [{"key": "u"}]  # no merge key: replaced
    assert patched["metadata"]["finalizers"] == ["f1", "f2"]
    assert pod["spec"]["containers"][1]["name"] == "b"  # the input is untouched
    replaced = strategic_merge_patch(pod, {"spec": {"$patch": "replace", "containers": []}})
    assert replaced["spec"] == {"containers": []}


def test_json_patch_operations():
    doc = {"a": {"b": [1, 2]}, "c": 1}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "remove", "path": "/c"},
            {"op": "copy", "from": "/a/b", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "test", "path": "/e/2", "value": 3},
            {"op": "replace", "path": "/a/b/0", "value": 0},
        ],
    )
    assert out == {"a": {"b": [0, 2, 3]}, "e": [1, 2, 3]}
    with pytest.raises(ApiError) as failed:
        json_patch(doc, [{"op": "test", "path": "/c", "value": 2}])
    assert failed.value.code == 422
    with pytest.raises(ApiError) as unsupported:
        apply_patch(doc, {}, "application/apply-patch+yaml")
    assert unsupported.value.code == 415
