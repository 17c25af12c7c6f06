"""The emulated API server's label and field selectors, on their own."""

from __future__ import annotations

import pytest

from mig_spawner.demo.emulator import ApiError
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
