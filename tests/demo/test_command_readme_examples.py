"""README's `explain` and `status` examples for the demo, run against the demo as it is.

The demo hub runs with its own jupyterhub_config.py (written by ``hub_config``; the banner
prints its path), whose quotas are not those of the repository's production example. Issue
19: README pointed explain at the example, which answered "limit 8" where the demo hub
enforces 4. Here README's own command lines run, with the banner's directory filled in,
against an emulated cluster started from the demo's cluster file and the config the demo
writes; the limits they report must be the demo hub's.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex

from cli_helpers import EXE, REPO
from test_live import hub_pod

from mig_spawner.demo.command import DEFAULT_CLUSTER, QUOTAS, banner, hub_config
from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_file


def readme_demo_commands() -> dict[str, list[str]]:
    """README's demo block: ``D=...`` and the mig-spawner lines that use ``$D``."""
    text = (REPO / "README.md").read_text()
    lines = re.findall(r"^mig-spawner (explain|status) (--kubeconfig \$D/.*)$", text, re.M)
    assert {cmd for cmd, _ in lines} == {"explain", "status"}, lines
    return {cmd: [cmd, *shlex.split(rest)] for cmd, rest in lines}


async def run(*args) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(EXE), *map(str, args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_readmes_explain_and_status_give_the_demo_hubs_limits(tmp_path):
    commands = readme_demo_commands()
    async with EmulatedCluster(load_cluster_file(DEFAULT_CLUSTER), kubelet="stub") as cluster:
        cluster.create_namespace("demo")
        # bob holds a 1g.10gb and (on a fallback) a 2g.20gb for team vision, as the demo
        # hub marks its servers: 3 of the team's compute slices
        for name, resource, profile in (
            ("jupyter-bob", "nvidia.com/mig-1g.10gb", "1g.10gb"),
            ("jupyter-bob--second", "nvidia.com/mig-2g.20gb", "2g.20gb"),
        ):
            cluster.create_pod(hub_pod(name, "bob", "vision", resource, profile, "1g.10gb"), "demo")
        await cluster.wait_for(lambda c: all(p["spec"].get("nodeName") for p in c.pods), timeout=10)
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        config = tmp_path / "jupyterhub_config.py"
        config.write_text(hub_config(cluster_url=cluster.url, port=8000, workdir=tmp_path))
        # the banner names this config, and README's command, filled in, is the banner's
        text = banner(
            "http://127.0.0.1:8000/hub/login",
            DEFAULT_CLUSTER,
            tmp_path / "pods",
            kubeconfig,
            config=config,
        )
        assert f"hub config: {config}" in text

        def filled(cmd: str) -> list[str]:
            return [a.replace("$D", str(tmp_path)) for a in commands[cmd]]

        assert " ".join(filled("explain")) in text

        code, out, err = await run(*filled("explain"), "--json")
        assert code == 0, err
        decision = json.loads(out)
        assert decision["team"] == "vision" and decision["code"] == "quota"
        enforced = QUOTAS["vision"]["compute_slices"]
        assert decision["quota"]["unit"] == "compute_slices"
        assert decision["quota"]["limit"] == enforced == 4
        assert decision["quota"]["used"] == 3
        assert (
            f"team vision's GPU quota has 3 of {enforced} compute slices in use"
            in (decision["message"])
        )

        code, out, err = await run(*filled("status"), "--json")
        assert code == 0, err
        teams = {t["team"]: t["limits"] for t in json.loads(out)["teams"]}
        for team, quota in QUOTAS.items():
            for unit, limit in quota.items():
                assert teams[team][unit]["limit"] == limit, (team, unit)
        assert teams["vision"]["compute_slices"]["used"] == 3
