"""A decision's consistent view of the cluster cache: read-only, and only while it is current.

Kueue copies its cache into a snapshot for each scheduling cycle. Here a decision is one
synchronous call, so the view need not be a copy (at 5,000 nodes a copy would cost more
than the decision): a :class:`Snapshot` pins the cache's ``version`` when it is taken,
offers only reads, and raises :class:`StaleSnapshot` on any read after the cache has
changed -- a decision either sees one consistent state or fails loudly, never a mix.
Indexes the cache builds lazily on a read are derived data and change no version.

Values derived from a snapshot are cached by the modules that derive them under
:attr:`Snapshot.key` (``(cache token, version)``) or :attr:`Snapshot.nodes_key`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .usage import scope as _scope


class StaleSnapshot(RuntimeError):
    """The cache changed after the snapshot was taken: decide again on a new one."""


class Snapshot:
    """Read-only access to a :class:`~.cluster.ClusterState` at one version."""

    __slots__ = ("cache", "key", "nodes_key", "version")

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.version = cache.version
        self.key = (cache.token, cache.version)
        self.nodes_key = (cache.token, cache.nodes_version)

    def snapshot(self) -> Snapshot:
        return self

    @property
    def current(self) -> bool:
        return self.cache.version == self.version

    def _live(self) -> Any:
        cache = self.cache
        if cache.version != self.version:
            raise StaleSnapshot(
                f"the cluster cache moved from version {self.version} to {cache.version}"
            )
        return cache

    # Reads, each checked against the version the snapshot was taken at.

    @property
    def nodes(self) -> Mapping[str, Any]:
        return MappingProxyType(self._live().nodes)

    @property
    def pods(self) -> Mapping[str, Any]:
        return MappingProxyType(self._live().pods)

    @property
    def reservations(self) -> Mapping[str, Any]:
        return MappingProxyType(self._live().reservations)

    @property
    def nodes_version(self) -> int:
        return self._live().nodes_version

    @property
    def kueue(self) -> Any:
        return self._live().kueue

    @property
    def kueue_namespace(self) -> str:
        return self.cache.kueue_namespace

    @property
    def trust(self) -> Any:
        return self.cache.trust

    def node(self, name: str) -> Any:
        return self._live().nodes[name]

    def slice_types(self) -> list:
        return self._live().slice_types()

    def node_slice_type(self, node: Any, kind: Any) -> Any:
        return self.cache.node_slice_type(node, kind)

    def nodes_offering(self, kind: Any) -> list:
        return self._live().nodes_offering(kind)

    def free(self, node: Any, kind: Any) -> int:
        return self._live().free(node, kind)

    def usage(self, team: str, user: str, scopes_now: Iterable[str] | None = None) -> Any:
        return self._live().usage(team, user, scopes_now)

    def pods_of(self, user: str) -> list:
        return self._live().pods_of(user)

    def slice_index(self, kind: Any, node_selector: Mapping[str, str], tolerations) -> Any:
        return self._live().slice_index(kind, node_selector, tolerations)

    def slice_partition(self, kind: Any, reaches) -> Any:
        return self._live().slice_partition(kind, reaches)

    def placement_problem(self, key: str) -> str | None:
        return self._live().placement_problem(key)

    scope = staticmethod(_scope)
