"""docs/configuration.md is generated from MIGSpawner's traitlets help and must stay in sync.

Regenerate with:  .venv/bin/python tests/docs/test_config_reference.py
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
HEADER = """# Configuration reference

Every setting of `MIGSpawner`, with its help text as `jupyterhub --help-all` prints it.
Set them in `jupyterhub_config.py` as `c.MIGSpawner.<name> = ...`, or under
`hub.config.MIGSpawner` in Z2JH Helm values. Every `KubeSpawner` setting keeps working too.
A complete, commented example: [`jupyterhub_config.py`](../jupyterhub_config.py).

<!-- Generated from the traitlets in mig_spawner/hub/spawner.py (and its mixins) by
     tests/docs/test_config_reference.py; edit the help strings there, not this file. -->
"""


def own_traits() -> dict:
    """MIGSpawner's settings, its mixins' included (not KubeSpawner's)."""
    from kubespawner import KubeSpawner

    from mig_spawner import MIGSpawner

    theirs = KubeSpawner.class_traits(config=True)
    return {k: t for k, t in MIGSpawner.class_traits(config=True).items() if k not in theirs}


def render() -> str:
    parts = [HEADER]
    own = own_traits()
    for name in sorted(own):
        trait = own[name]
        default = trait.default_value_repr()
        parts.append(f"\n## `{name}`\n\n{type(trait).__name__}, default `{default}`.\n")
        parts.append("\n" + inspect.cleandoc(trait.help) + "\n")
    return "".join(parts)


def test_every_setting_has_admin_facing_help():
    own = own_traits()
    assert {"tiers", "fallback_chains", "team_quotas", "default_quota", "charge"} <= set(own)
    assert {"prometheus_url", "reclaim_dry_run", "hub_api_token"} <= set(own)  # a mixin's
    for name, trait in own.items():
        assert len(inspect.cleandoc(trait.help)) > 40, f"{name} needs help an admin can use"


def test_reference_page_is_in_sync_with_the_traitlets():
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: run .venv/bin/python tests/docs/test_config_reference.py"
    )


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}", file=sys.stderr)
