"""mig-spawner: a JupyterHub KubeSpawner that hands out NVIDIA MIG slices.

The pure core (``catalog``, ``tiers``, ``cluster``, ``quota``, ``admission``) imports
neither kubespawner nor any I/O library; ``MIGSpawner`` is imported lazily so that the
core, the CLI and the tests of the core never pay for (or depend on) KubeSpawner.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["MIGSpawner", "__version__"]


def __getattr__(name: str):
    if name == "MIGSpawner":
        from .spawner import MIGSpawner

        return MIGSpawner
    raise AttributeError(f"module 'mig_spawner' has no attribute {name!r}")
