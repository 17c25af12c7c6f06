"""An emulated Kubernetes cluster with NVIDIA MIG GPU nodes, for tests and the demo.

It is a real HTTP API server (aiohttp, plain HTTP on a loopback address, no auth) that the
real ``kubernetes_asyncio`` client, KubeSpawner and our cluster watcher talk to, plus the
parts of a control plane and of the nodes that they can observe:

* ``apiserver`` and ``store``: core/v1 pods, nodes, events and namespaces (and plain storage
  for services, PVCs, secrets, configmaps, serviceaccounts) with server-set metadata (uid, one
  global resourceVersion counter, creationTimestamp, generateName), label and field
  selectors, list pagination, watches that resume from a resourceVersion out of a bounded
  history (410 Expired when it is too old), merge, strategic-merge and JSON patch, graceful
  pod deletion, ``Status`` errors with the real codes, a request log and fault injection;
* ``validation``: the API-server defaulting and validation that code can trip over (names,
  labels, extended resources needing limits equal to requests, immutable pod specs);
* ``scheduler``: kube-scheduler's filters and FailedScheduling messages for extended
  resources, node selectors and affinity, taints, cordoned and NotReady nodes;
* ``kubelet``, ``podenv``, ``podstatus``, ``runtime`` and ``podinit``: pods run as real
  processes (under a tini-like init that takes every descendant down with the pod) or as
  tiny stub HTTP servers, each on its own loopback address 127.0.0.N, with kubelet-style
  status, events, restart policy, admission and graceful termination;
* ``controllers`` and ``events``: node taints in step with cordon/NotReady, pod GC, namespace
  deletion; events aggregated as client-go's recorder does;
* ``clusterfile`` and ``nodelabels``: cluster YAML files turned into Node objects labelled as
  GPU Feature Discovery and the NVIDIA device plugin label real nodes (mixed, single and none
  MIG strategies), with layouts checked against :mod:`mig_spawner.core.catalog`.

Why our own server and not ``kmock``: kmock (0.8) is a request/response mock DSL with basic
Kubernetes CRUD. We need far more Kubernetes *behaviour* than routing: watches that resume
from a resourceVersion with a bounded history and 410s, selectors on lists and watches,
server-set metadata and pod status, a scheduler, a kubelet that runs processes, events and
graceful deletion. Bending kmock to all that would mean fighting its routing and state model
and adding dependencies (attrs, jsonpatch) for little gain; a small aiohttp app whose every
behaviour is ours is simpler to reason about and to keep deterministic.

How it compares with the real API server. ``tests/conformance`` runs the same tests against
the emulator and a real kube-apiserver 1.37 (``make k8s``; ``mig_spawner.demo.controlplane``):
list then watch from the list's resourceVersion, 410 Expired (a 200 stream with one ERROR
event) for a resourceVersion older than the history, bookmarks, label and field selectors on
lists and watches, graceful and immediate pod deletion, events as KubeSpawner reads them,
FailedScheduling, 422 for invalid names, labels and extended resources, and requests
defaulted from limits. The differences that suite found were fixed (a label value ending in
a newline passed validation; an object leaving a watch's selector came as DELETED with its
new state instead of the last matching one; kube-scheduler's events are ``events.k8s.io``
events, with ``eventTime`` and no ``lastTimestamp``). The ones that remain, on purpose:

* resourceVersions count from 1 in one counter; a real server's are etcd revisions. Both
  are opaque to clients, and nothing here compares them across kinds.
* The history is a bounded per-kind buffer: a watch from before it is 410 at once
  (:meth:`EmulatedCluster.compact_history` empties it). A real watch cache replays from its
  start-up list onwards and answers 410 only for older versions, or after evicting events
  older than 75 s; the conformance suite's launcher starts etcd a few revisions in so the
  real server has "too old" versions at all.
* Bookmarks come every :attr:`ApiServer.bookmark_interval` (60 s) and before a watch times
  out; the real watch cache sends them about once a minute and 2 s before the timeout.
* No authentication or authorization (plain HTTP on loopback); the RBAC the hub needs is
  tested on the real server (``tests/hub/test_spawner_real.py``).
* A missing namespace is created on first use unless ``auto_namespaces=False``.
* Admission is only the defaulting and validation in :mod:`.validation` (which does set
  ``serviceAccountName`` and the not-ready/unreachable tolerations): no projected token
  volume, no check that the ServiceAccount exists, no PodSecurity; no ``kubernetes``
  Service.

Public API::

    from mig_spawner.demo.emulator import EmulatedCluster, load_cluster_file, ClusterSpecError
    async with EmulatedCluster(load_cluster_file(path), kubelet="stub") as cluster:
        cluster.url                               # http://127.0.0.1:PORT
        cluster.write_kubeconfig(tmp / "kubeconfig")
        await cluster.wait_for(lambda c: ..., timeout=10)
        cluster.pods, cluster.nodes, cluster.events, cluster.pod(name, ns), cluster.node(name)
        cluster.add_node(...), cluster.cordon(name), cluster.uncordon(name),
        cluster.set_node_ready(name, ready), cluster.label_node(name, {...}),
        cluster.delete_node(name), cluster.create_pod(pod, ns), cluster.delete_pod(name, ns)
        cluster.requests, cluster.inject_faults(...), cluster.break_watches(),
        cluster.compact_history(), cluster.pod_log(name, ns)

Run one by hand with ``python -m mig_spawner.demo.emulator [cluster.yaml] --kubeconfig PATH``.
"""

from __future__ import annotations

from .apiserver import Fault
from .cluster import EmulatedCluster
from .clusterfile import (
    ClusterSpec,
    ClusterSpecError,
    NodeSpec,
    load_cluster_file,
    load_cluster_spec,
    shipped_cluster_file,
)
from .nodelabels import node_object
from .status import ApiError

__all__ = [
    "ApiError",
    "ClusterSpec",
    "ClusterSpecError",
    "EmulatedCluster",
    "Fault",
    "NodeSpec",
    "load_cluster_file",
    "load_cluster_spec",
    "node_object",
    "shipped_cluster_file",
]
