"""helm-values/rbac and the umbrella chart's template: least-privilege, valid, bound to the hub.

The ClusterRole must grant exactly the Kubernetes API calls mig-spawner's cluster watcher
makes (mig_spawner.hub.watch.CLUSTER_API_CALLS, and in Kueue mode
mig_spawner.hub.kueue.KUEUE_API_CALLS): every call covered, nothing more.
"""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest
import yaml
from z2jh_values import (
    BASE_VALUES,
    CHART_DEFAULTS,
    CHART_VERSION,
    HELM_VALUES,
    coalesce,
    hub_service_account,
    load_yaml,
    root_config,
)

RBAC = HELM_VALUES / "rbac"
UMBRELLA = HELM_VALUES / "umbrella"
TEMPLATE = UMBRELLA / "templates" / "mig-spawner-rbac.yaml"
K8S_VERSIONS = ("1.28", "1.33")
RBAC_GROUP = "rbac.authorization.k8s.io"


def plain_manifests() -> list[dict]:
    return [d for f in sorted(RBAC.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def only(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    """The (api group, resource, verb) triples a list of PolicyRules grants."""
    calls = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        calls |= {
            (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        }
    return calls


def umbrella_hub_values() -> dict:
    """The jupyterhub subchart's values in the umbrella chart (its defaults + our nesting)."""
    return coalesce(load_yaml(UMBRELLA / "values.yaml")["jupyterhub"], load_yaml(CHART_DEFAULTS))


def render_umbrella_template(release: str, namespace: str) -> list[dict]:
    """Render templates/mig-spawner-rbac.yaml without helm, for umbrella/values.yaml.

    Each template expression is replaced by the value Helm would produce; the set of
    expressions is fixed here, so a changed template fails until this table is updated.
    """
    assert load_yaml(UMBRELLA / "values.yaml")["migSpawner"]["rbac"]["create"] is True
    name = f"{namespace}-{release}-mig-spawner-hub"
    values = {
        "{{- if .Values.migSpawner.rbac.create }}": "",
        '{{- $hubContext := dict "Values" .Values.jupyterhub "Chart" (dict "Name" "jupyterhub")'
        ' "Release" .Release }}': "",
        "{{- $serviceAccount := include"
        ' "jupyterhub.hub-serviceaccount.fullname" $hubContext }}': "",
        '{{- $name := printf "%s-%s-mig-spawner-hub" .Release.Namespace .Release.Name }}': "",
        '{{- $hubId := dig "hub" "config" "MIGSpawner" "hub_id" "jupyterhub"'
        " .Values.jupyterhub }}": "",
        "{{ $hubId }}": "jupyterhub",
        "{{ $name }}": name,
        "{{ $serviceAccount }}": hub_service_account(umbrella_hub_values(), release),
        "{{ .Release.Name }}": release,
        "{{ .Release.Namespace }}": namespace,
        "{{ .Release.Service }}": "Helm",
        "{{- end }}": "",
    }
    text = re.sub(r"\{\{-? */\*.*?\*/ *-?\}\}", "", TEMPLATE.read_text(), flags=re.S)
    assert set(re.findall(r"\{\{.*?\}\}", text)) == set(values)
    for expression, value in values.items():
        text = text.replace(expression, value)
    return [d for d in yaml.safe_load_all(text) if d]


# --------------------------------------------------------------------------- least privilege


def test_clusterrole_grants_exactly_the_cluster_watchers_calls():
    from mig_spawner.hub.kueue import KUEUE_API_CALLS
    from mig_spawner.hub.watch import CLUSTER_API_CALLS

    role = only(plain_manifests(), "ClusterRole")
    assert "aggregationRule" not in role
    assert granted(role["rules"]) == set(CLUSTER_API_CALLS) | set(KUEUE_API_CALLS)


def test_least_privilege_check_rejects_extra_rights():
    rules = only(plain_manifests(), "ClusterRole")["rules"]
    with_get = copy.deepcopy(rules)
    with_get[0]["verbs"].append("get")
    assert granted(with_get) != granted(rules)
    with pytest.raises(AssertionError, match="wildcard"):
        granted([{"apiGroups": [""], "resources": ["*"], "verbs": ["list"]}])
    with pytest.raises(AssertionError):
        granted(
            [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"], "resourceNames": ["x"]}]
        )


def test_umbrella_template_grants_the_same_rules_as_the_plain_manifest():
    plain = only(plain_manifests(), "ClusterRole")["rules"]
    rendered = only(render_umbrella_template("jhub", "jupyterhub"), "ClusterRole")["rules"]
    assert rendered == plain


# ---------------------------------------------------------------------- valid Kubernetes RBAC


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("source", ["plain", "umbrella"])
def test_manifests_validate_strictly(source, version):
    docs = plain_manifests() if source == "plain" else render_umbrella_template("jhub", "gpu-hub")
    assert {d["kind"] for d in docs} == {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_strict_validation_rejects_a_misspelt_field(version):
    role = copy.deepcopy(only(plain_manifests(), "ClusterRole"))
    role["rule"] = role.pop("rules")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, version, strict=True)


# ---------------------------------------------------------------- bound to the hub's account


def test_hub_service_account_naming_follows_the_chart():
    defaults = load_yaml(CHART_DEFAULTS)
    assert hub_service_account(defaults, "anything") == "hub"
    prefixed = {**defaults, "fullnameOverride": None}
    assert hub_service_account(prefixed, "gpu") == "gpu-jupyterhub-hub"
    assert hub_service_account(prefixed, "my-jupyterhub") == "my-jupyterhub-hub"
    named = copy.deepcopy(defaults)
    named["hub"]["serviceAccount"]["name"] = "hub-sa"
    assert hub_service_account(named, "gpu") == "hub-sa"
    named["hub"]["serviceAccount"].update(create=False, name=None)
    assert hub_service_account(named, "gpu") == "default"


def test_plain_binding_targets_the_charts_hub_service_account():
    docs = plain_manifests()
    role, binding = only(docs, "ClusterRole"), only(docs, "ClusterRoleBinding")
    values = coalesce(load_yaml(BASE_VALUES), load_yaml(CHART_DEFAULTS))
    assert binding["roleRef"] == {
        "apiGroup": RBAC_GROUP,
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    # The namespace the root example's hub runs in.
    namespace = root_config().KubeSpawner.namespace
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": hub_service_account(values, "jhub"),
            "namespace": namespace,
        }
    ]


def test_umbrella_binding_targets_the_subcharts_hub_service_account():
    docs = render_umbrella_template("jhub", "gpu-hub")
    role, binding = only(docs, "ClusterRole"), only(docs, "ClusterRoleBinding")
    # Cluster-scoped names carry namespace and release, so two hubs never collide.
    assert role["metadata"]["name"] == binding["metadata"]["name"] == "gpu-hub-jhub-mig-spawner-hub"
    assert binding["roleRef"] == {
        "apiGroup": RBAC_GROUP,
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "gpu-hub"}
    ]


# ------------------------------------------------------------------------- the umbrella chart


def test_umbrella_depends_on_the_jupyterhub_chart_without_alias():
    chart = load_yaml(UMBRELLA / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    # An alias would break the subchart's name helpers that the RBAC template calls.
    assert chart["dependencies"] == [
        {
            "name": "jupyterhub",
            "version": CHART_VERSION,
            "repository": "https://hub.jupyter.org/helm-chart/",
        }
    ]


def test_umbrella_values_nest_exactly_the_base_values():
    umbrella = load_yaml(UMBRELLA / "values.yaml")
    assert set(umbrella) == {"migSpawner", "jupyterhub"}
    assert umbrella["jupyterhub"] == load_yaml(BASE_VALUES)


# ------------------------------------------------------------------ the waiting line's Role


def line_grants(rules: list[dict]) -> set[tuple[str, str, str, str]]:
    """(api group, resource, verb, object name or "*") for each call a Role's rules allow."""
    calls = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        names = rule.get("resourceNames") or ["*"]
        calls |= {
            (g, r, v, n)
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
            for n in names
        }
    return calls


def line_calls(hub_id: str = "jupyterhub") -> set[tuple[str, str, str, str]]:
    """What hub/linestore calls: on its one ConfigMap; create cannot name the object
    (Kubernetes authorises a create before the name in its body is known)."""
    from mig_spawner.core.linedoc import configmap_name
    from mig_spawner.hub.linestore import LINE_API_CALLS

    name = configmap_name(hub_id)
    return {(g, r, v, "*" if v == "create" else name) for g, r, v in LINE_API_CALLS}


def test_line_role_grants_exactly_the_line_stores_calls():
    docs = plain_manifests()
    role, binding = only(docs, "Role"), only(docs, "RoleBinding")
    assert line_grants(role["rules"]) == line_calls()
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "jupyterhub"
    assert binding["roleRef"] == {
        "apiGroup": RBAC_GROUP,
        "kind": "Role",
        "name": "mig-spawner-hub-line",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "jupyterhub"}
    ]


def test_line_role_check_fails_on_a_wider_or_narrower_role():
    rules = copy.deepcopy(only(plain_manifests(), "Role")["rules"])
    unnamed = copy.deepcopy(rules)
    del unnamed[1]["resourceNames"]  # update on every ConfigMap of the namespace
    assert line_grants(unnamed) != line_calls()
    no_update = copy.deepcopy(rules)
    no_update[1]["verbs"].remove("update")
    assert line_grants(no_update) != line_calls()
    assert line_grants(rules) != line_calls("second-hub")


def test_umbrella_template_grants_the_same_line_rules():
    plain = only(plain_manifests(), "Role")["rules"]
    docs = render_umbrella_template("jhub", "gpu-hub")
    role, binding = only(docs, "Role"), only(docs, "RoleBinding")
    assert role["rules"] == plain
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "gpu-hub"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "gpu-hub"}
    ]
