"""The ``mig-spawner`` command and the file loaders it needs.

May import :mod:`mig_spawner.core` and do file I/O (stdin, snapshots, ``exec`` of a hub
config); imports :mod:`mig_spawner.demo` only lazily, for ``mig-spawner demo``.

- :mod:`.main`      argument parsing, exit codes, one-line errors.
- :mod:`.explain`   a decision from files, and the text of ``explain`` / ``catalog``.
- :mod:`.snapshot`  ``kubectl get nodes,pods -A -o json`` files → ClusterState.
- :mod:`.hubconfig` a ``jupyterhub_config.py`` → the MIGSpawner settings → Policy.
- :mod:`.live`      the live cluster (kubeconfig or in-cluster; list only) → a snapshot.
- :mod:`.status`    ``mig-spawner status``: rich tables and ``--json`` from core.slicemap.
"""
