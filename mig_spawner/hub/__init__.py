"""The JupyterHub shell: :class:`~.spawner.MIGSpawner` and the cluster watch that feeds it.

May import :mod:`mig_spawner.core`, JupyterHub, KubeSpawner, kubernetes_asyncio and
tornado; never :mod:`mig_spawner.cli` or :mod:`mig_spawner.demo` (a production hub
ships none of the demo).

- :mod:`.spawner`   ``MIGSpawner``: traitlets, the form, decide-and-reserve at ``start()``.
- :mod:`.watch`     ``ClusterView``: one hub-wide list+watch of Nodes and Pods per API
  server, applied event by event to a :class:`~mig_spawner.core.cluster.ClusterState`.
- :mod:`.metrics`   Prometheus gauges computed at scrape time, decision counters, the
  one log line per decision.
- :mod:`.service`   mig-spawner's hub-managed service (its own process): the pages below.
- :mod:`.adminpage` ``/services/mig/``, the admins' GPU slice page.
- :mod:`.live`      ``/services/mig/api/figures``, an open spawn form's live figures.
- :mod:`.hubcompat` the one JupyterHub-version adapter (refusals on JupyterHub 5).
- ``templates/``    the spawn form and the slice page.
"""
