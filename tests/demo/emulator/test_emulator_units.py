"""Selectors, patches and quantities on their own."""

from __future__ import annotations

from fractions import Fraction

import pytest

from mig_spawner.demo.emulator import ApiError
from mig_spawner.demo.emulator.patch import apply_patch, json_patch, strategic_merge_patch
from mig_spawner.demo.emulator.quantity import parse_quantity
from mig_spawner.demo.emulator.selectors import Selector, parse_field_selector

POD = {
    "metadata": {"name": "p", "namespace": "jhub", "labels": {"app": "nb", "tier": "small"}},
    "spec": {"nodeName": "", "containers": []},
    "status": {"phase": "Pending"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app=nb", True),
        ("app==nb", True),
        ("app!=nb", False),
        ("missing!=x", True),
        ("app in (nb, other)", True),
        ("app in (other)", False),
        ("tier notin (large,huge)", True),
        ("missing notin (x)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("app=nb,tier in (small),!gpu", True),
        ("app=nb,tier=large", False),
        ("", True),
    ],
)
def test_label_selectors(selector, matches):
    assert Selector.parse("pods", selector, None).matches(POD) is matches


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("spec.nodeName=", True),
        ("spec.nodeName!=", False),
        ("status.phase=Pending", True),
        ("status.phase==Running", False),
        ("metadata.namespace=jhub,metadata.name=p", True),
        ("metadata.name!=p", False),
    ],
)
def test_field_selectors(selector, matches):
    assert Selector.parse("pods", None, selector).matches(POD) is matches


def test_event_field_selectors_and_errors():
    event = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"}}
    assert Selector.parse("events", None, "involvedObject.kind=Pod").matches(event)
    assert not Selector.parse("events", None, "involvedObject.name=q").matches(event)
    with pytest.raises(ApiError) as unsupported:
        parse_field_selector("spec.foo=bar", "pods")
    assert unsupported.value.code == 400
    assert unsupported.value.message == "field label not supported: spec.foo"
    with pytest.raises(ApiError):
        Selector.parse("pods", "app in (a", None)
    with pytest.raises(ApiError):
        Selector.parse("pods", "a=b=c", None)


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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Fraction(1, 10)),
        ("2", 2),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("1e3", 1000),
        ("0.5", Fraction(1, 2)),
        (3, 3),
        ("512Ki", 512 * 1024),
    ],
)
def test_quantities(text, value):
    assert parse_quantity(text) == value


def test_bad_quantity():
    with pytest.raises(ValueError):
        parse_quantity("ten")
