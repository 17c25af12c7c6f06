"""The demo, driven in headless Chromium: what a person sees and does.

Runs the real ``mig-spawner demo`` (emulated cluster, kubelet running real
jupyterhub-singleuser processes, JupyterHub with MIGSpawner) and walks it as users:
alice sees CPU, GPU and image choices and starts a 1g notebook in JupyterLab; once the
two 1g slices are taken, erin is told why (the fallback is over her whole quota) and bob
(same team) that his notebook falls back to a larger slice; bob, his team's quota nearly
used, sees the larger tiers refused with the reason and starts a CPU server instead;
dave types his own image for the training tier. Screenshots go to
``test-artifacts/browser/``.

The tests run in order and share one demo, once on the embedded emulator and once with
``--real-control-plane`` (kube-apiserver, kube-scheduler, kube-controller-manager and etcd
from ``make k8s``, GPU nodes from the node agent); screenshots of the second go to
``test-artifacts/browser/real-control-plane/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from mig_spawner.demo.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MIG_SPAWNER_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
CHROMIUM = os.environ.get("PLAYWRIGHT_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "mig-demo"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", params=["emulator", "real-control-plane"])
def demo(request):
    """``mig-spawner demo`` as a user runs it; stopped with Ctrl-C (SIGINT) at the end."""
    port = free_port()
    script = Path(sys.executable).with_name("mig-spawner")
    argv = [str(script), "demo", "--port", str(port)]
    artifacts = ARTIFACTS
    if request.param == "real-control-plane":
        from realk8s import require_real_control_plane

        require_real_control_plane()
        argv.append("--real-control-plane")
        artifacts = ARTIFACTS / "real-control-plane"
    artifacts.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "mig-spawner demo is running" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(240):
        proc.kill()
        raise AssertionError("demo did not start:\n" + "".join(lines[-40:]))
    time.sleep(0.2)  # the rest of the banner
    (kubeconfig,) = [line.split(":", 1)[1].strip() for line in lines if "kubeconfig:" in line]
    # the banner's kubeconfig reaches the running cluster
    nodes = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nodes.returncode == 0 and "node/" in nodes.stdout, nodes.stderr
    yield {
        "url": f"http://127.0.0.1:{port}",
        "proc": proc,
        "lines": lines,
        "artifacts": artifacts,
    }

    descendants = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, "".join(lines[-40:])
    time.sleep(1)
    alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"demo left processes behind: {[p.cmdline() for p in alive]}"
    assert any("mig-spawner demo stopped." in line for line in lines)


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def login(browser, demo, user: str) -> Page:
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{demo['url']}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    return page


def tier(page: Page, slug: str):
    return page.locator(f'#kubespawner-profiles-list label[data-tier="{slug}"]')


def start_and_reach_lab(page: Page, user: str, shot: Path) -> str:
    """Submit the form, wait until JupyterLab has loaded; return the page title."""
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    page.wait_for_url(f"**/user/{user}/**", timeout=120_000)
    expect(page.locator(".jp-Launcher")).to_be_visible(timeout=120_000)  # Lab has loaded
    page.screenshot(path=str(shot))
    return page.title()


def test_the_banner_names_the_admin(demo):
    banner = "".join(demo["lines"])
    assert "admin:     alice" in banner and "/hub/admin" in banner
    # nothing from the proxy's start-up (its 404s and stack dumps) before the banner
    before = banner.split("mig-spawner demo is running")[0]
    assert "404 GET" not in before and "ECONNREFUSED" not in before


def test_alice_sees_cpu_gpu_and_image_choices_and_reaches_jupyterlab(browser, demo):
    page = login(browser, demo, "alice")
    page.wait_for_url("**/hub/spawn**")
    slugs = page.locator("#kubespawner-profiles-list label.js-profile-label")
    expect(slugs).to_have_count(4)
    assert [slugs.nth(i).get_attribute("data-tier") for i in range(4)] == [
        "cpu",
        "training",
        "notebook",
        "full",
    ]
    expect(tier(page, "cpu")).to_contain_text("No GPU")
    notebook = tier(page, "notebook")
    expect(notebook).to_contain_text("1 × 1g.10gb · 10 GB · 16 SMs on H100 80GB")
    expect(notebook).to_contain_text("2 of 2 free")
    expect(notebook).to_contain_text("team vision: 0 of 4 compute slices in use")
    expect(tier(page, "full")).to_contain_text("1 × 7g.80gb")
    # the admin's image choice on the training tier, with a free-text "Other"
    image = page.locator("#profile-option-training--image")
    expect(image.locator("option")).to_have_text(["PyTorch", "TensorFlow", "Other..."])
    # alice is in two teams: a real select (Bootstrap's form-select), figures follow it
    team = page.locator("#profile-option-notebook--team")
    expect(team).to_have_value("vision")
    expect(team).to_have_class(re.compile(r"\bform-select\b"))
    expect(team).to_have_accessible_name("Team")
    team.select_option("nlp")
    expect(notebook.locator(".mig-quota")).to_have_text("team nlp: 0 of 8 compute slices in use")
    team.select_option("vision")
    page.screenshot(path=str(demo["artifacts"] / "01-tier-picker-alice.png"), full_page=True)
    page.check("#profile-item-notebook")
    title = start_and_reach_lab(page, "alice", demo["artifacts"] / "02-alice-jupyterlab.png")
    assert "JupyterLab" in title
    page.context.close()


def test_bob_is_told_his_notebook_falls_back_to_a_larger_slice(browser, demo):
    # erin keeps the form open while carol (team nlp) takes the last 1g.10gb slice
    erin = login(browser, demo, "erin")
    erin.wait_for_url("**/hub/spawn**")
    expect(tier(erin, "notebook")).to_contain_text("1 of 2 free")
    carol = login(browser, demo, "carol")
    carol.wait_for_url("**/hub/spawn**")
    expect(tier(carol, "notebook")).to_contain_text("1 of 2 free")
    carol.check("#profile-item-notebook")
    start_and_reach_lab(carol, "carol", demo["artifacts"] / "03-carol-jupyterlab.png")
    carol.context.close()
    # erin's open form updates by itself (it polls the hub's live figures)
    expect(tier(erin, "notebook")).to_contain_text("0 of 2 free", timeout=10_000)
    # ... and for erin (personal quota: 1 slice, no server) the cause, not "stop a server"
    reason = tier(erin, "notebook").locator(".mig-reason")
    expect(reason).to_have_text(
        "Every 1g.10gb on H100 80GB is taken (0 of 2 free), and the fallback, 2g.10gb on "
        "A100 40GB, needs 2 compute slices: more than the whole of your personal GPU quota "
        "(1 compute slice). Try again when a 1g.10gb slice is free."
    )
    expect(reason).to_have_css("color", "rgb(139, 26, 26)")  # full contrast, no opacity
    expect(tier(erin, "notebook")).to_have_css("opacity", "1")
    expect(erin.locator("#profile-item-notebook")).to_be_disabled()
    # the refresh left a startable option selected: the CPU server
    expect(erin.locator("#profile-item-cpu")).to_be_checked()
    expect(erin.locator("#spawn_form [type=submit]")).to_be_enabled()
    erin.screenshot(path=str(demo["artifacts"] / "04-erin-quota-reason.png"), full_page=True)
    erin.context.close()

    bob = login(browser, demo, "bob")
    bob.wait_for_url("**/hub/spawn**")
    notebook = tier(bob, "notebook")
    expect(notebook).to_contain_text("0 of 2 free")
    expect(notebook).to_contain_text("none free: starts on 2g.10gb on A100 40GB")
    bob.screenshot(path=str(demo["artifacts"] / "04-bob-fallback-note.png"), full_page=True)
    bob.check("#profile-item-notebook")
    bob.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    # the progress page says what happened, once, before JupyterLab opens
    expect(bob.locator("#progress-log")).to_contain_text(
        "Starting on the larger 1 × 2g.10gb · 10 GB · 28 SMs on A100 40GB: every 1g.10gb on "
        "H100 80GB is taken (0 of 2 free).",
        timeout=60_000,
    )
    # ... and its headline names the slice and why on every line, without repeating the note
    expect(bob.locator("#progress-message")).to_contain_text(
        "2g.10gb on A100 40GB (every 1g.10gb taken): ", timeout=60_000
    )
    bob.locator("#progress-details summary").click()  # open the event log for the shot
    bob.screenshot(path=str(demo["artifacts"] / "05-bob-progress.png"), full_page=True)
    bob.wait_for_url("**/user/bob/**", timeout=120_000)
    expect(bob.locator(".jp-Launcher")).to_be_visible(timeout=120_000)
    bob.context.close()


def test_bob_over_quota_sees_the_refusal_and_starts_a_cpu_server(browser, demo):
    # vision now holds alice's 1g and bob's 2g: 3 of its 4 compute slices
    page = login(browser, demo, "bob")
    page.goto(f"{demo['url']}/hub/spawn/bob/second")
    training = tier(page, "training")
    expect(training.locator(".mig-reason")).to_have_text(
        "'3g training' needs 3 compute slices (3g.40gb on H100 80GB); team vision's GPU "
        "quota has 3 of 4 compute slices in use (2 compute slices of them yours), 1 left. "
        "Stop one of your servers: default server (2g.10gb), or ask your hub admin for a "
        "larger quota."
    )
    expect(page.locator("#profile-item-training")).to_be_disabled()
    expect(page.locator("#profile-item-full")).to_be_disabled()
    page.screenshot(path=str(demo["artifacts"] / "06-bob-over-quota.png"), full_page=True)
    # a CPU server needs no GPU and no quota: it starts
    expect(tier(page, "cpu")).to_contain_text("No GPU")
    page.check("#profile-item-cpu")
    page.click("#spawn_form [type=submit]")
    page.wait_for_url("**/user/bob/second/**", timeout=120_000)
    expect(page.locator(".jp-Launcher")).to_be_visible(timeout=120_000)
    page.context.close()


def test_dave_types_his_own_image_for_the_training_tier(browser, demo):
    page = login(browser, demo, "dave")
    page.wait_for_url("**/hub/spawn**")
    page.check("#profile-item-training")
    page.select_option("#profile-option-training--image", "unlisted-choice")
    other = page.locator("#profile-option-training--image--unlisted-choice")
    expect(other).to_be_visible()
    other.fill("quay.io/jupyter/scipy-notebook:2024-12-09")
    page.screenshot(path=str(demo["artifacts"] / "07-dave-image-choice.png"), full_page=True)
    page.click("#spawn_form [type=submit]")
    expect(page.locator("#progress-log")).to_contain_text("Starting on 1 × 3g.40gb", timeout=60_000)
    page.wait_for_url("**/user/dave/**", timeout=120_000)
    page.context.close()


def test_admin_sees_the_slice_map_team_bars_fallback_and_refusals(browser, demo):
    # bob forces the disabled training tier in his form: the hub refuses it at start.
    bob = login(browser, demo, "bob")
    bob.wait_for_url("**/user/bob/**")  # his running server opens first
    bob.goto(f"{demo['url']}/hub/spawn/bob/third")
    bob.evaluate(
        """() => {
            const choice = document.querySelector('#profile-item-training');
            choice.disabled = false;
            choice.checked = true;
        }"""
    )
    bob.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    # (dave holds the 3g.40gb now: the 7g fallback is over vision's whole quota)
    expect(bob.locator("body")).to_contain_text(
        "more than the whole of team vision's GPU quota (4 compute slices)"
    )
    # bob is no admin: 403 (the service's page, after the hub's OAuth)
    assert bob.goto(f"{demo['url']}/services/mig/").status == 403
    bob.context.close()

    page = login(browser, demo, "alice")
    page.goto(f"{demo['url']}/services/mig/")
    expect(page.locator("#mig-health")).to_contain_text("Cluster view healthy")
    # every GPU drawn; alice's, carol's and bob's servers on their slices
    for node in ("gpu-h100-a", "gpu-h100-b", "gpu-a100-a"):
        expect(page.locator(f'[data-node="{node}"]')).to_be_visible()
    h100 = page.locator('[data-node="gpu-h100-a"]')
    expect(h100.locator('.mig-cell[data-user="alice"]')).to_contain_text("vision · notebook")
    expect(h100.locator('.mig-cell[data-user="carol"]')).to_contain_text("nlp · notebook")
    bob_cell = page.locator('[data-node="gpu-a100-a"] .mig-cell[data-user="bob"]')
    expect(bob_cell).to_contain_text("2g.10gb")
    expect(bob_cell.locator(".mig-fallback-badge")).to_contain_text("1g.10gb")
    expect(page.locator("#mig-fallbacks")).to_contain_text("bob")
    # team bars against quota, and bob's refusal counted by reason and tier
    expect(
        page.locator('#mig-teams [data-team="vision"][data-unit="compute_slices"]')
    ).to_contain_text("3 of 4")
    refusal = page.locator('#mig-refusals .mig-refusal[data-code="quota"]').first
    expect(refusal).to_contain_text("quota")
    expect(refusal).to_contain_text("training")
    # the page has the hub's navigation: Home and the admin link
    expect(page.locator("nav.navbar")).to_contain_text("Admin")
    page.screenshot(path=str(demo["artifacts"] / "07-admin-slice-map.png"), full_page=True)
    page.context.close()


_KUBE = """
import asyncio, json, sys
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

async def main(action, body, kubeconfig):
    await config.load_kube_config(config_file=kubeconfig)
    async with client.ApiClient() as api:
        v1 = client.CoreV1Api(api)
        if action == "delete":
            await v1.delete_namespaced_pod("batch-live", "research", grace_period_seconds=0)
            return
        try:
            await v1.create_namespace({"metadata": {"name": "research"}})
        except ApiException as e:
            if e.status not in (404, 405, 409):  # exists, or an API without namespaces
                raise
        await v1.create_namespaced_pod("research", json.loads(body))

asyncio.run(main(*sys.argv[1:]))
"""


def _kube(demo, action: str, body: dict | None = None) -> None:
    """Create or delete someone else's pod through the demo's kubeconfig (either plane)."""
    line = next(line for line in demo["lines"] if line.strip().startswith("kubeconfig:"))
    kubeconfig = line.split("kubeconfig:", 1)[1].strip()
    argv = [sys.executable, "-c", _KUBE, action, json.dumps(body or {}), kubeconfig]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_an_open_form_shows_a_change_within_5_s_of_the_event(browser, demo):
    page = login(browser, demo, "dave")
    page.wait_for_url(lambda url: "/hub/login" not in url)
    page.goto(f"{demo['url']}/hub/spawn/dave/live")
    # what the open form polls: mig-spawner's service, logged in through the hub's OAuth
    expect(page.locator("#kubespawner-profiles-list")).to_have_attribute(
        "data-mig-live", "/services/mig/api/figures"
    )
    figures = page.request.get(f"{demo['url']}/services/mig/api/figures").json()
    # a GPU tier whose first slice type has a free slice (earlier tests took some)
    slug, first = next(
        (slug, f["chain"][0])
        for slug, f in figures["tiers"].items()
        if f["gpu"]
        and f["chain"]
        and f["chain"][0]["free"] > 0
        and not f["chain"][0]["label"].startswith("whole")
    )
    free, total = (
        int(x) for x in figures["tiers"][slug]["available"].split(" free")[0].split(" of ")
    )
    profile = first["label"].split(" on ")[0]
    expect(tier(page, slug)).to_contain_text(f"{free} of {total} free")
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "batch-live", "namespace": "research"},
        "spec": {
            "containers": [
                {
                    "name": "job",
                    "image": "busybox",
                    "resources": {"limits": {f"nvidia.com/mig-{profile}": "1"}},
                }
            ]
        },
    }
    _kube(demo, "create", body)
    # someone else's job took a slice: the open form says so within 5 s, no reload
    expect(tier(page, slug)).to_contain_text(f"{free - 1} of {total} free", timeout=5_000)
    _kube(demo, "delete")
    expect(tier(page, slug)).to_contain_text(f"{free} of {total} free", timeout=5_000)
    page.screenshot(path=str(demo["artifacts"] / "08-live-figures.png"), full_page=True)
    page.context.close()


def test_bob_gives_his_2g_back_once_carol_stops_and_a_1g_frees(browser, demo):
    """Issue 23's "done when" on the demo: a borrower sees "a 1g slice is free: restart to
    give back the 2g" on the hub's home page, and one click moves him; nothing before it."""
    bob = login(browser, demo, "bob")
    bob.wait_for_url("**/user/bob/**")
    bob.goto(f"{demo['url']}/hub/home")
    expect(bob.locator("#stop")).to_be_visible()
    expect(bob.locator(".mig-give-back")).to_have_count(0)  # every 1g.10gb is taken
    # carol stops her notebook from her home page: one 1g.10gb frees
    carol = login(browser, demo, "carol")
    carol.wait_for_url("**/user/carol/**")
    carol.goto(f"{demo['url']}/hub/home")
    carol.click("#stop")
    expect(carol.locator("#start")).to_contain_text("Start My Server", timeout=60_000)
    carol.context.close()
    # bob's home page now says so, and offers the move
    notice = bob.locator(".mig-give-back")
    for _ in range(20):  # the hub's view sees carol's pod go within a few seconds
        bob.goto(f"{demo['url']}/hub/home")
        if notice.count():
            break
        bob.wait_for_timeout(500)
    expect(notice).to_contain_text("runs on a 2g.10gb slice.")
    expect(notice).to_contain_text(
        "A 1g.10gb slice is free (1 of 2): restart to give back the 2g.10gb."
    )
    bob.screenshot(path=str(demo["artifacts"] / "09-bob-give-back.png"), full_page=True)
    bob.click("text=Restart on a 1g.10gb slice")
    bob.wait_for_url("**/user/bob/**", timeout=120_000)
    expect(bob.locator(".jp-Launcher")).to_be_visible(timeout=120_000)
    # he runs on a 1g.10gb now: no longer a borrower
    figures = bob.request.get(f"{demo['url']}/services/mig/api/figures").json()
    assert figures["borrowers"] == [], figures["borrowers"]
    bob.goto(f"{demo['url']}/hub/home")
    expect(bob.locator(".mig-give-back")).to_have_count(0)
    bob.context.close()
