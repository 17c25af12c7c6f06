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
    # Only the import: JupyterHub resolves ``spawner_class = "mig"`` here while it loads
    # its config, and importing mig-spawner must start and register nothing.
    if name == "MIGSpawner":
        from .hub.spawner import MIGSpawner

        return MIGSpawner
    raise AttributeError(f"module 'mig_spawner' has no attribute {name!r}")
