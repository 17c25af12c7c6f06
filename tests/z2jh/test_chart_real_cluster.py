"""The chart's hub, deployed on the real Kubernetes control plane, as a hub pod runs it.

``helm template`` renders the real Z2JH 4.4.0 chart with ``helm-values/values.yaml``. Then,
in one private mount and network namespace (``hubpod.py --real``, ``realcluster.py``):

* kube-apiserver (Node,RBAC, TLS on loopback), kube-scheduler, kube-controller-manager and
  etcd start; the rendered hub ServiceAccount, Role and RoleBinding, the chart's user
  scheduler's ServiceAccount, ClusterRole and ClusterRoleBinding, and our ClusterRole and
  ClusterRoleBinding as the operator guide's own commands write them for this release and
  namespace are applied; nothing else grants the hub anything;
* the node agent registers the demo cluster's GPU nodes; the chart's user scheduler (the
  rendered KubeSchedulerConfiguration, ``jhub-user-scheduler``) places the user pods, and
  the PV controller binds each user's claim to a static PersistentVolume;
* the hub runs the chart's ``jupyterhub_config.py`` (hub image pins, rendered ConfigMap and
  Secret at /usr/local/etc/jupyterhub) with what the kubelet gives its pod: the in-cluster
  environment (``KUBERNETES_SERVICE_HOST/PORT``, no KUBECONFIG) and a token of the ``hub``
  ServiceAccount with the apiserver's CA and the namespace at
  /var/run/secrets/kubernetes.io/serviceaccount, in a mount namespace of its own.

A user logs in and gets the form; every tier is spawned over REST and must be Running on a
GPU node. Then one verb is taken out of our ClusterRole and the hub restarts: its spawns
must then be refused ("GPU availability is unknown") and the hub must log the 403, which
shows that RBAC is enforced on the hub's own identity.

Why the control plane runs inside the hub's network namespace rather than the hub on the
machine's: the chart fixes the hub's ports (8081, proxy 8000/8001) and the user scheduler's
(10259), and a hub reaches each user pod at the pod's address; inside one namespace those
cannot clash with a parallel run or a developer's ``make demo``, and every address the hub
dials (apiserver, pods, proxy) is one it would dial in a cluster. The only thing not as in a
cluster is KUBERNETES_SERVICE_HOST: it is the API server's own address, not a ClusterIP (no
service proxy runs).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import chart
import yaml
from test_chart_hub import DEMO_CLUSTER, OAUTH_SECRET, TEST_VALUES, TOKEN, written_tier_order
from test_chart_hub import z2jh_python as hub_python
from test_guide_commands import run_rbac_block

HERE = Path(__file__).resolve().parent
NAMESPACE, RELEASE = "jupyterhub", "jhub"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
GUIDE = chart.ROOT / "docs" / "deploy-z2jh.md"
OUR_ROLE = yaml.safe_load((chart.HELM_VALUES / "rbac/clusterrole.yaml").read_text())
NODES = [n["name"] for n in yaml.safe_load(DEMO_CLUSTER.read_text())["nodes"]]


def rendered(manifests: list[dict], kind: str, name: str) -> dict:
    obj = chart.find(manifests, kind, name)
    if kind not in CLUSTER_SCOPED:
        obj["metadata"]["namespace"] = NAMESPACE
    return obj


def scheduler_binding(service_account: str) -> dict:
    """What the chart's user-scheduler ClusterRole lacks for the kube-scheduler run here.

    Chart 4.4.0's ClusterRole is a copy of kube-scheduler 1.30's role (its image is
    kube-scheduler v1.30.14). The scheduler here is the control plane's own 1.37 binary,
    which also reads the resource.k8s.io (DRA) objects and VolumeAttachments and does not
    start scheduling until it may. The API server's built-in ``system:kube-scheduler`` role
    is that version's list, so the user scheduler's ServiceAccount gets it too. The hub's
    own permissions are untouched: only the chart's hub Role and our ClusterRole.
    """
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{RELEASE}-user-scheduler-k8s-1.37"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kube-scheduler",
        },
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
    }


def cluster_setup(manifests: list[dict], tmp_path: Path, volumes: int) -> dict:
    hub = chart.find(manifests, "Deployment", "hub")["spec"]["template"]["spec"]
    sched = chart.find(manifests, "Deployment", "user-scheduler")["spec"]["template"]["spec"]
    (container,) = sched["containers"]
    (mount,) = container["volumeMounts"]
    objects = [
        rendered(manifests, "ServiceAccount", hub["serviceAccountName"]),
        rendered(manifests, "Role", "hub"),
        rendered(manifests, "RoleBinding", "hub"),
        rendered(manifests, "ServiceAccount", sched["serviceAccountName"]),
        rendered(manifests, "ClusterRole", f"{RELEASE}-user-scheduler"),
        rendered(manifests, "ClusterRoleBinding", f"{RELEASE}-user-scheduler"),
        scheduler_binding(sched["serviceAccountName"]),
        # docs/deploy-z2jh.md step 3, run as written (kubectl apply recorded)
        *run_rbac_block(tmp_path, NAMESPACE, RELEASE),
    ]
    values = chart.values_seen_by_hub(manifests)
    return {
        "namespace": NAMESPACE,
        "hub_service_account": hub["serviceAccountName"],
        "objects": objects,
        "cluster_file": str(DEMO_CLUSTER),
        "node_names": NODES,
        "volumes": volumes,
        "volume_size": values["singleuser"]["storage"]["capacity"],
        "user_scheduler": {
            "service_account": sched["serviceAccountName"],
            "command": [*(container.get("command") or []), *(container.get("args") or [])],
            "config": chart.find(manifests, "ConfigMap", "user-scheduler")["data"]["config.yaml"],
            "config_dir": mount["mountPath"],
        },
    }


def run_on_real_cluster(tmp_path: Path) -> dict:
    files = [chart.HELM_VALUES / "values.yaml"]
    manifests = chart.render([*files, TEST_VALUES], release=RELEASE, namespace=NAMESPACE)
    pod = chart.hub_pod(manifests, tmp_path / "root", namespace=NAMESPACE, existing=[OAUTH_SECRET])
    assert "KUBECONFIG" not in pod.env
    tiers = written_tier_order(files)
    quotas = pod.values["hub"]["config"]["MIGSpawner"]["team_quotas"]
    first, second = sorted((t for t in quotas if quotas[t]), key=lambda t: quotas[t]["order"])[:2]
    members = [f"{second}-{slug}" for slug in tiers]
    plan = {
        "token": TOKEN,
        "groups": {second: [*members, "two-teams", "late"], first: ["two-teams"]},
        "users": [],
        "forms": [members[0]],
        "spawns": [
            *({"user": u, "tier": t} for u, t in zip(members, tiers, strict=True)),
            {"user": "two-teams", "tier": tiers[0], "teams": [first, second]},
        ],
        "refusals": {"user": "", "tier": "", "count": 0},  # test_chart_hub covers these
        "rbac_drop": {
            "name": OUR_ROLE["metadata"]["name"],
            "resource": "nodes",
            "verb": "list",
            "user": "late",
            "tier": tiers[0],
        },
    }
    (pod.root / "pod.json").write_text(
        json.dumps(
            {
                "command": pod.command,
                "proxy_command": pod.proxy_command,
                "env": pod.env,
                "workdir": str(pod.workdir),
            }
        )
    )
    setup = tmp_path / "setup.json"
    setup.write_text(json.dumps(cluster_setup(manifests, tmp_path, len(plan["spawns"]) + 2)))
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "result.json"
    python = hub_python()
    bins = [str(Path(python).parent), str(chart.ROOT / ".node/node_modules/.bin")]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PATH"] = os.pathsep.join([*bins, os.environ["PATH"]])
    cmd = ["unshare", "--mount", "--net", "--", python, str(HERE / "hubpod.py"), "--real"]
    cmd += [str(pod.root), str(setup), str(tmp_path / "plan.json"), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env)
    logs = {
        name: (pod.root / f"{name}.log").read_text(errors="replace")
        for name in ("hub", "node-agent", "user-scheduler")
        if (pod.root / f"{name}.log").exists()
    }
    assert done.returncode == 0 and out.exists(), (
        f"hubpod.py --real failed ({done.returncode}):\n{done.stderr[-4000:]}\n"
        + "\n".join(f"{name} log:\n{text[-3000:]}" for name, text in logs.items())
    )
    result = json.loads(out.read_text())
    result.update(logs=logs, plan=plan, tiers=tiers)
    return result


def test_chart_hub_deploys_on_the_real_control_plane(tmp_path):
    result = run_on_real_cluster(tmp_path)
    log = result["logs"]["hub"]
    assert "Using Spawner: mig_spawner.hub.spawner.MIGSpawner" in log, log[-3000:]
    # the user logs in and gets every tier, in the values file's order
    (form,) = result["forms"].values()
    assert form["status"] == 200, form["html"][-2000:]
    assert form["tiers"] == result["tiers"], form["html"][-3000:]
    # every tier is spawned, scheduled by the chart's user scheduler and Running
    *per_tier, two_teams = result["spawns"]
    assert [s["tier"] for s in per_tier] == result["tiers"]
    for spawn in result["spawns"]:
        assert spawn["status"] in (201, 202), spawn
        (line,) = spawn["admission"]
        assert f"tier={spawn['tier']} " in line and "outcome=refused" not in line, spawn
        assert spawn["ready"], (spawn, log[-3000:])
        (pod,) = spawn["pods"]
        assert pod["metadata"]["namespace"] == NAMESPACE
        assert pod["metadata"]["labels"]["mig-spawner/tier"] == spawn["tier"]
        assert pod["spec"]["schedulerName"] == f"{RELEASE}-user-scheduler"
        assert pod["spec"]["nodeName"] in NODES, pod["spec"]  # bound to a GPU node
        assert pod["status"]["phase"] == "Running", pod["status"]
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert any(k.startswith("nvidia.com/mig-") for k in limits), limits
        scheduled = [e for e in spawn["events"] if e["reason"] == "Scheduled"]
        assert scheduled, spawn["events"]
        assert {e.get("reportingComponent") for e in scheduled} == {f"{RELEASE}-user-scheduler"}
        (claim,) = spawn["claims"]
        assert claim["status"]["phase"] == "Bound", claim
        assert claim["spec"]["volumeName"].startswith("chart-test-")
    assert len({s["pods"][0]["spec"]["nodeName"] for s in per_tier}) >= 2  # two GPU models
    assert f" team={two_teams['teams'][0]} " in two_teams["admission"][0], two_teams
    # RBAC is enforced on the hub's ServiceAccount: without list on nodes, no GPU spawns
    after = result["after_drop"]
    denied = [line for line in after["log"].splitlines() if "Kubernetes API answered 403" in line]
    assert denied, after["log"][-3000:]
    who = 'User \\"system:serviceaccount:jupyterhub:hub\\" cannot list resource \\"nodes\\"'
    assert who in denied[0], denied[0]  # the hub spoke as its ServiceAccount
    assert "GPU availability is unknown" in after["form"]["html"]
    spawn = after["spawn"]
    assert not spawn["ready"] and not spawn["pods"], spawn
    (line,) = [line for line in after["log"].splitlines() if "Refusing spawn" in line]
    assert "cluster state unknown" in line
    # the hub, proxy, user scheduler, node agent and control plane all stopped when asked
    assert result["left_running"] == [], result["left_running"]
    # the guide's troubleshooting quotes these lines as the hub writes them
    guide = " ".join(GUIDE.read_text().split())
    for quoted in ("Kubernetes API answered 403", "Refusing spawn: cluster state unknown"):
        assert quoted in guide
    assert who.replace('\\"', '"') in guide
