"""The functional core: what a user gets for a tier, and why.

Pure Python on Kubernetes objects as the API returns them (plain dicts): no I/O, no
JupyterHub, KubeSpawner, kubernetes_asyncio, tornado or aiohttp import, no clock. A module
here may import the standard library and other ``core`` modules only;
``tests/core/test_core_is_pure.py`` checks every file in this folder.

- :mod:`.catalog`   GPU models and MIG profiles (``data/catalog.json``); catalog facts
  such as :data:`~.catalog.WHOLE_GPU` and :data:`~.catalog.MAX_COMPUTE_SLICES`.
- :mod:`.policy`    the admin's tiers, chains and quotas, validated → :class:`~.policy.Policy`.
- :mod:`.nodes`     a Node → what it offers (slice type × count).
- :mod:`.pods`      a Pod → what it holds and whom it is charged to.
- :mod:`.cluster`   :class:`~.cluster.ClusterState`, the cache kept from watch events, with
  assume/forget; :mod:`.snapshot` a decision's read-only view of it; :mod:`.index` and
  :mod:`.usage` its indexes and quota sums; :mod:`.memo` value-keyed derived caches.
- :mod:`.claim`     :class:`~.claim.Claim`, one spawn's lifecycle as a value.
- :mod:`.chains`    a tier → its ordered fallback chain of slice types.
- :mod:`.quota`     usage and the quota check.
- :mod:`.admission` :func:`~.admission.decide` / :func:`~.admission.admit`: the decision.
- :mod:`.options`   the shape of a user's spawn options.
- :mod:`.form`      the spawn form's data (KubeSpawner ``profile_list`` entries).
- :mod:`.slicemap`  who holds which slice of which GPU (drawn at catalog placements), capacity
  and team rows: the data of the GPU slice page, the metrics and ``mig-spawner status``.
"""
