"""The local demo: a hub with MIGSpawner on an emulated MIG cluster.

May import anything in the package; nothing outside ``demo`` imports it (the CLI only
lazily, for ``mig-spawner demo``), so a production hub never loads the emulator.

- :mod:`.command`   ``mig-spawner demo``: emulator + JupyterHub + a one-password login
  (:mod:`.hubextras`).
- :mod:`.emulator`  an emulated Kubernetes API server, scheduler and kubelet.
- ``clusters/``     the demo's cluster files (GPU nodes and their MIG layouts).
"""
