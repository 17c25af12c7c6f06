"""mig-spawner: a JupyterHub KubeSpawner that hands out NVIDIA MIG slices.

The package is laid out by role; a folder's name tells what its code may import:

- :mod:`mig_spawner.core`  the pure decision core (standard library only);
- :mod:`mig_spawner.hub`   MIGSpawner and the cluster watch (core + JupyterHub/KubeSpawner);
- :mod:`mig_spawner.cli`   the ``mig-spawner`` command and its file loaders (core + I/O);
- :mod:`mig_spawner.demo`  the local demo and the emulated cluster (anything).

``MIGSpawner`` is imported lazily so that the core, the CLI and their tests never pay for
(or depend on) KubeSpawner.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["MIGSpawner", "__version__"]


def __getattr__(name: str):
    if name == "MIGSpawner":
        # JupyterHub resolves ``spawner_class = "mig"`` here while loading its config:
        # the moment to have the hub check the policy before it serves anyone.
        from .hub.config import check_at_hub_start
        from .hub.spawner import MIGSpawner

        check_at_hub_start()
        return MIGSpawner
    raise AttributeError(f"module 'mig_spawner' has no attribute {name!r}")
