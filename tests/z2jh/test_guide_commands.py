"""docs/deploy-z2jh.md, walked: its shell and YAML blocks run here as an operator runs them.

Each test takes a block from the guide verbatim and runs it with bash. Where a command would
reach a cluster or the internet, a shell function of the same name stands in and records
what it was given: ``kubectl apply -f -`` keeps the manifest, ``helm upgrade --install``
becomes a real ``helm template`` of the shared 4.4.0 chart with the same arguments, and
``kubectl get nodes,pods -A -o json`` prints a snapshot of an emulated cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import chart
import yaml

from mig_spawner.cli.hubconfig import load_helm_values, policy_from_config
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_file

DOC = chart.ROOT / "docs" / "deploy-z2jh.md"
SNAPSHOT = chart.ROOT / "tests" / "cli" / "snapshots" / "mixed-h100.json"
DEMO_CLUSTER = chart.ROOT / "mig_spawner" / "demo" / "clusters" / "demo.yaml"


def blocks(lang: str) -> list[str]:
    """The guide's fenced blocks of one language, dedented (list items indent theirs)."""
    found = re.findall(rf"^( *)```{lang}\n(.*?)^\1```", DOC.read_text(), re.S | re.M)
    return [textwrap.dedent(body) for _, body in found]


def block(lang: str, containing: str) -> str:
    (found,) = [b for b in blocks(lang) if containing in b]
    return found


def bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(chart.ROOT / ".venv" / "bin"), os.environ["PATH"]])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path, **env},
    )
    assert done.returncode == 0, f"{script}\n--- stderr:\n{done.stderr}"
    return done


def workspace(tmp_path: Path) -> Path:
    """A directory like the operator's checkout: helm-values/ and docs next to their files."""
    (tmp_path / "helm-values").symlink_to(chart.HELM_VALUES)
    return tmp_path


RECORD = """
record() { n=$(ls "$OUT" | wc -l); printf '%s\\n' "$*" > "$OUT/$n.args"; }
"""
KUBECTL_STUB = (
    RECORD
    + """
kubectl() {
  record kubectl "$@"
  if [[ "$1 ${2:-} ${3:-}" == "apply -f -" ]]; then cat > "$OUT/$(ls "$OUT" | wc -l).yaml"
  elif [[ "$1 ${2:-}" == "apply -f" ]]; then cp "$3" "$OUT/$(ls "$OUT" | wc -l).yaml"
  elif [[ "$1 ${2:-}" == "get nodes,pods" ]]; then cat "$SNAPSHOT"
  fi
}
"""
)


def test_gpu_operator_comes_from_nvidias_repo_with_the_mig_strategy(tmp_path):
    script = block("bash", "helm install gpu-operator")
    bash(RECORD + 'helm() { record helm "$@"; }\n' + script, tmp_path, OUT=str(tmp_path))
    calls = [p.read_text().split() for p in sorted(tmp_path.glob("*.args"), key=_n)]
    assert calls[0][:3] == ["helm", "repo", "add"]
    repo_name, repo_url = calls[0][3:5]
    assert repo_url == "https://helm.ngc.nvidia.com/nvidia"
    assert calls[1] == ["helm", "repo", "update"]
    install = calls[2]
    assert install[:4] == ["helm", "install", "gpu-operator", f"{repo_name}/gpu-operator"]
    assert "mig.strategy=mixed" in install


def _n(path: Path) -> int:
    return int(path.stem)


def run_rbac_block(tmp_path: Path, ns: str, release: str) -> list[dict]:
    script = block("bash", "clusterrolebinding.yaml")
    assert script.startswith("NS=jupyterhub RELEASE=jhub\n")
    script = f"NS={ns} RELEASE={release}\n" + script.split("\n", 1)[1]
    out = tmp_path / f"{ns}-{release}"
    out.mkdir()
    bash(KUBECTL_STUB + script, chart.ROOT, OUT=str(out))
    return [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"), key=_n)]


def test_rbac_commands_give_each_hub_its_own_binding(tmp_path):
    first = run_rbac_block(tmp_path, "jupyterhub", "jhub")
    second = run_rbac_block(tmp_path, "research", "gpu-hub")
    for (role, binding), ns, release in (
        (first, "jupyterhub", "jhub"),
        (second, "research", "gpu-hub"),
    ):
        assert role["kind"] == "ClusterRole" and binding["kind"] == "ClusterRoleBinding"
        assert binding["metadata"]["name"] == f"{ns}-{release}-mig-spawner-hub"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": ns}]
        # the same name the umbrella chart gives that release's binding (real helm)
        rendered = chart.render_umbrella(tmp_path / f"umbrella-{ns}", release=release, namespace=ns)
        (umbrella,) = [
            d
            for d in rendered
            if d["kind"] == "ClusterRoleBinding" and "mig-spawner" in d["metadata"]["name"]
        ]
        assert umbrella["metadata"]["name"] == binding["metadata"]["name"]
        assert umbrella["subjects"] == binding["subjects"]
    # a second hub adds a binding; it does not overwrite the first one's
    assert first[1]["metadata"]["name"] != second[1]["metadata"]["name"]
    assert first[0] == second[0]  # one ClusterRole, shared


def helm_template_stub(workdir: Path) -> str:
    """``helm upgrade --install R jupyterhub/jupyterhub --version 4.4.0 ...`` -> helm template."""
    helm = shlex.quote(chart.helm())
    return (
        RECORD
        + f"""
helm() {{
  [[ "$1 $2" == "upgrade --install" ]] || {{ echo "unexpected: helm $*" >&2; return 1; }}
  local release="$3" ref="$4"; shift 4
  [[ "$ref" == jupyterhub/jupyterhub ]] || {{ echo "unexpected chart $ref" >&2; return 1; }}
  local args=()
  while (($#)); do
    case "$1" in
      --version) [[ "$2" == 4.4.0 ]] || return 1; shift 2 ;;
      --create-namespace) shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  {helm} template "$release" {shlex.quote(str(chart.CHART))} --kube-version {chart.KUBE_VERSION} \\
    "${{args[@]}}" > {shlex.quote(str(workdir / "rendered.yaml"))}
}}
"""
    )


def test_the_install_command_deploys_the_image_built_in_step_2(tmp_path):
    work = workspace(tmp_path)
    (work / "my-site.yaml").write_text(block("yaml", "# my-site.yaml\nhub:\n  image:"))
    bash(
        helm_template_stub(work) + block("bash", "values.yaml \\\n  -f my-site.yaml"),
        work,
        OUT=str(work),
    )
    rendered = [d for d in yaml.safe_load_all((work / "rendered.yaml").read_text()) if d]
    hub = chart.find(rendered, "Deployment", "hub")["spec"]["template"]["spec"]["containers"][0]
    # step 2's build, with its REGISTRY, names that same image
    build = block("bash", "docker build")
    registry = re.search(r"^REGISTRY=(\S+)", build, re.M).group(1)
    tag = re.search(r'docker push "\$REGISTRY/([^"]+)"', build).group(1)
    assert hub["image"] == f"{registry}/{tag}"
    assert (
        chart.values_seen_by_hub(rendered)["hub"]["config"]["JupyterHub"]["spawner_class"] == "mig"
    )


def test_tier_images_are_pre_pulled(tmp_path):
    site = tmp_path / "my-site.yaml"
    site.write_text(block("yaml", "extraImages"))
    rendered = chart.render([chart.HELM_VALUES / "values.yaml", site])
    puller = chart.find(rendered, "DaemonSet", "continuous-image-puller")["spec"]["template"][
        "spec"
    ]
    pulled = {c["image"] for c in puller["initContainers"]}
    policy = policy_from_config(
        load_helm_values([str(chart.HELM_VALUES / "values.yaml"), str(site)])
    )
    tier_images = {
        t.kubespawner_override["image"]
        for t in policy.tiers.values()
        if "image" in t.kubespawner_override
    }
    assert tier_images and tier_images <= pulled
    values = chart.values_seen_by_hub(rendered)
    assert (
        f"{values['singleuser']['image']['name']}:{values['singleuser']['image']['tag']}" in pulled
    )


async def test_explain_commands_run_against_the_live_cluster_and_a_snapshot(tmp_path):
    """Step 6 verbatim: --kubeconfig reads a live API server (here the emulated cluster)."""
    work = workspace(tmp_path)
    script = block("bash", "mig-spawner explain --kubeconfig")
    async with EmulatedCluster(load_cluster_file(DEMO_CLUSTER), kubelet="stub") as cluster:
        kubeconfig = tmp_path / "kubeconfig"
        cluster.write_kubeconfig(kubeconfig)
        env = {**os.environ, "OUT": str(work), "SNAPSHOT": str(SNAPSHOT)}
        env["PATH"] = os.pathsep.join([str(chart.ROOT / ".venv" / "bin"), os.environ["PATH"]])
        env["KUBECONFIG"] = str(kubeconfig)
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            KUBECTL_STUB + script,
            cwd=work,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        listed = [r for r in cluster.requests if r[0] == "GET" and r[1].endswith("/nodes")]
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    # 1: a report from the live cluster; 2: one JSON decision from the snapshot; 3: status
    report, _, rest = text.partition("\n{")
    assert "alice" in report and "notebook" in report
    body, _, status = rest.partition("\n}\n")
    decision = json.loads("{" + body + "\n}")
    assert decision["user"] == "carol" and decision["team"] == "nlp"
    assert decision["tier"] == "training"
    assert "vision" in status and "nlp" in status
    assert listed, "explain --kubeconfig never read the API server"
    calls = [p.read_text().split() for p in work.glob("*.args")]
    assert ["kubectl", "get", "nodes,pods", "-A", "-o", "json"] in calls


def test_the_cli_install_block_installs_this_checkout():
    script = block("bash", "pip install ./")
    assert "python3 -m venv" in script and "mig-spawner --version" in script
    # what `pip install ./` installs is the console script the rest of the guide runs
    meta = (chart.ROOT / "pyproject.toml").read_text()
    assert 'mig-spawner = "mig_spawner.cli.main:main"' in meta
