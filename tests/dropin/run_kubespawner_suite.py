"""Run KubeSpawner 7.1.0's own test suite with MIGSpawner in KubeSpawner's place.

MIGSpawner claims to be a drop-in KubeSpawner: with no ``tiers`` it must behave exactly as
KubeSpawner does. The proof is KubeSpawner's own tests (``../shared/kubespawner-7.1.0/``,
read in place, never copied into the project). This script copies them into a temporary
folder, adds a top-level ``conftest.py`` that makes ``kubespawner.KubeSpawner`` and
``kubespawner.spawner.KubeSpawner`` name ``mig_spawner.MIGSpawner`` before any test
module imports them, and runs them with KubeSpawner's own pytest settings, in the venv
``make kubespawner-suite`` builds with KubeSpawner's own test pins.

Exit status: pytest's, or 1 when the substitution did not take or fewer tests passed than
KubeSpawner's own run (187) -- a suite that silently skipped would prove nothing.

    python tests/dropin/run_kubespawner_suite.py [--shared ../shared] [pytest args...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: KubeSpawner 7.1.0's own run without a cluster: 187 passed, 20 skipped (its README).
EXPECTED_PASSED = 187

CONFTEST = '''\
"""Put MIGSpawner where KubeSpawner's tests look for KubeSpawner (written by mig-spawner)."""
import kubespawner
import kubespawner.spawner

from mig_spawner import MIGSpawner

assert issubclass(MIGSpawner, kubespawner.spawner.KubeSpawner)  # the real one, not yet replaced
kubespawner.KubeSpawner = MIGSpawner
kubespawner.spawner.KubeSpawner = MIGSpawner


def pytest_collection_finish(session):
    import kubespawner as ks

    assert ks.KubeSpawner is MIGSpawner, "the substitution did not take"
    name = ks.KubeSpawner.__module__ + "." + ks.KubeSpawner.__name__
    print("\\nmig-spawner: KubeSpawner is", name)
'''

# Any valid kubeconfig: the cluster-free tests never contact it, the others skip when it
# does not answer. Port 9 on loopback: nothing listens, nothing leaves the machine.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args, pytest_args = parser.parse_known_args(argv)
    suite = Path(args.shared) / "kubespawner-7.1.0"
    if not (suite / "tests" / "conftest.py").is_file():
        print(f"KubeSpawner's suite is not at {suite}/tests (use --shared)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kubespawner-suite-") as tmp:
        work = Path(tmp)
        shutil.copytree(suite / "tests", work / "tests")
        shutil.copy(suite / "pytest-settings.toml", work / "pyproject.toml")
        (work / "conftest.py").write_text(CONFTEST)
        (work / "kubeconfig").write_text(KUBECONFIG)
        env = {
            **os.environ,
            "KUBECONFIG": str(work / "kubeconfig"),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no"]
        proc = subprocess.run(
            [*cmd, "tests", *pytest_args], cwd=work, env=env, text=True, capture_output=True
        )
    out = proc.stdout + proc.stderr
    summary = [line for line in out.splitlines() if re.match(r"=+ .*(passed|failed|error)", line)]
    print("\n".join(out.splitlines()[-60:]) if proc.returncode else (summary or [""])[-1])
    if "KubeSpawner is mig_spawner.hub.spawner.MIGSpawner" not in out:
        print("FAILED: MIGSpawner was not substituted for KubeSpawner", file=sys.stderr)
        return 1
    passed = re.search(r"(\d+) passed", (summary or [""])[-1])
    too_few = not passed or int(passed[1]) < EXPECTED_PASSED
    if proc.returncode == 0 and not pytest_args and too_few:
        print(f"FAILED: fewer than {EXPECTED_PASSED} tests passed", file=sys.stderr)
        return 1
    if proc.returncode == 0:
        print("KubeSpawner 7.1.0's own suite passed with MIGSpawner in KubeSpawner's place")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
