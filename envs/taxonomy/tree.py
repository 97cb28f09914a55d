"""The taxonomy as a layered tree of class indices, coarse rank to fine rank.

Ranks are ordered coarse -> fine (order, family, genus, species). Every rank has a
class map ``{"null": 0, taxon ids sorted -> 1..K}``, so a rank with ``K`` taxa has
``K + 1`` class indices. Between adjacent ranks the tree stores one array
``parents[r]`` of shape ``(K_r + 1,)``: the class index at rank ``r - 1`` of the
parent of each class index at rank ``r`` (the null class maps to null). Because a
parent always sits at the adjacent coarser rank, a valid tree has a single parent per
node and no cycles; :meth:`TaxonomyTree.from_taxon_edges` checks both on raw
``child -> parent`` taxon-id edges, where either can go wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.errors import read_json

__all__ = ["NULL_CLASS", "TaxonomyTree", "build_class_map"]

NULL_CLASS = 0
"""Class index of "null" (no label at this rank) in every class map."""


def build_class_map(taxon_ids: np.ndarray) -> dict[str, int]:
    """``{"null": 0, sorted non-zero taxon ids -> 1..K}``; taxon id 0 means null.

    Keys are strings so the map round-trips through JSON unchanged.
    """
    ids = np.unique(np.asarray(taxon_ids, dtype=np.int64))
    ids = ids[ids != 0]
    class_map = {"null": NULL_CLASS}
    class_map.update({str(int(t)): i + 1 for i, t in enumerate(ids)})
    return class_map


@dataclass(frozen=True)
class TaxonomyTree:
    """Ranks coarse -> fine, their class maps and child -> parent maps.

    Attributes
    ----------
    ranks : tuple of str
        Rank names coarse -> fine, e.g. ``("L40", "L30", "L20", "L10")``.
    class_maps : tuple of dict
        Per rank, ``{"null": 0, str(taxon_id): class index 1..K}``.
    parents : tuple of np.ndarray
        ``parents[0]`` is empty (the coarsest rank has no parent rank);
        ``parents[r]`` (r >= 1) has shape ``(K_r + 1,)``, int64, and holds the class
        index at rank ``r - 1`` of each class at rank ``r`` (``parents[r][0] == 0``).
    """

    ranks: tuple[str, ...]
    class_maps: tuple[dict[str, int], ...]
    parents: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.ranks) < 1:
            raise ValueError("ranks must name at least one rank, got none")
        if len(set(self.ranks)) != len(self.ranks):
            raise ValueError(f"ranks must be distinct, got {self.ranks}")
        if len(self.class_maps) != len(self.ranks) or len(self.parents) != len(self.ranks):
            raise ValueError(
                f"class_maps ({len(self.class_maps)}) and parents ({len(self.parents)}) must"
                f" have one entry per rank ({len(self.ranks)})"
            )
        for r, (rank, class_map) in enumerate(zip(self.ranks, self.class_maps)):
            if class_map.get("null") != NULL_CLASS:
                raise ValueError(f"class map of rank {rank!r} must map 'null' to 0")
            if sorted(class_map.values()) != list(range(len(class_map))):
                raise ValueError(
                    f"class map of rank {rank!r} must use the indices 0..{len(class_map) - 1}"
                    " exactly once"
                )
            if r == 0:
                if len(self.parents[0]) != 0:
                    raise ValueError(f"the coarsest rank {rank!r} cannot have parents")
                continue
            parents = np.asarray(self.parents[r])
            if parents.shape != (len(class_map),):
                raise ValueError(
                    f"parents of rank {rank!r} must have shape ({len(class_map)},), got {parents.shape}"
                )
            n_parent = len(self.class_maps[r - 1])
            if parents[0] != NULL_CLASS:
                raise ValueError(f"the null class of rank {rank!r} must have the null parent")
            bad = np.flatnonzero((parents[1:] < 1) | (parents[1:] >= n_parent)) + 1
            if bad.size:
                raise ValueError(
                    f"class {int(bad[0])} of rank {rank!r} has parent {int(parents[bad[0]])};"
                    f" parents must be classes 1..{n_parent - 1} of rank {self.ranks[r - 1]!r}"
                )

    # ----------------------------------------------------------------- queries
    @property
    def n_ranks(self) -> int:
        """Number of ranks."""
        return len(self.ranks)

    @property
    def num_classes(self) -> tuple[int, ...]:
        """Class-map size per rank, null included (``K_r + 1``)."""
        return tuple(len(m) for m in self.class_maps)

    def class_index(self, rank: int, taxon_id: int) -> int:
        """Class index of a taxon id at ``rank`` (0 for taxon id 0 = null)."""
        if taxon_id == 0:
            return NULL_CLASS
        try:
            return self.class_maps[rank][str(int(taxon_id))]
        except KeyError:
            raise ValueError(
                f"taxon id {taxon_id} is not in the class map of rank {self.ranks[rank]!r}"
            ) from None

    def encode(self, taxa: np.ndarray) -> np.ndarray:
        """Taxon ids ``(N, n_ranks)`` (coarse -> fine, 0 = null) to class indices, same shape."""
        taxa = np.asarray(taxa)
        if taxa.ndim != 2 or taxa.shape[1] != self.n_ranks:
            raise ValueError(f"taxa must have shape (N, {self.n_ranks}), got {taxa.shape}")
        out = np.zeros(taxa.shape, dtype=np.int64)
        for r, class_map in enumerate(self.class_maps):
            lookup = {int(k): v for k, v in class_map.items() if k != "null"}
            lookup[0] = NULL_CLASS
            try:
                out[:, r] = [lookup[int(t)] for t in taxa[:, r]]
            except KeyError as err:
                raise ValueError(
                    f"taxon id {err.args[0]} is not in the class map of rank {self.ranks[r]!r}"
                ) from None
        return out

    def children_mask(self, rank: int, parent_class: int) -> np.ndarray:
        """Bool ``(K_rank + 1,)``: the classes at ``rank`` whose parent is ``parent_class``
        at ``rank - 1`` (null never included)."""
        if not 1 <= rank < self.n_ranks:
            raise ValueError(f"rank must be in [1, {self.n_ranks - 1}] to have a parent, got {rank}")
        mask = self.parents[rank] == parent_class
        mask[NULL_CLASS] = False
        return mask

    def is_consistent(self, classes: Sequence[int]) -> bool:
        """True when every non-null class (coarse -> fine) is a child of the class above it,
        as far as both are non-null."""
        for r in range(1, min(len(classes), self.n_ranks)):
            if classes[r] != NULL_CLASS and classes[r - 1] != NULL_CLASS:
                if self.parents[r][classes[r]] != classes[r - 1]:
                    return False
        return True

    def fingerprint(self) -> str:
        """Short hash of ranks, class maps and parents: a model trained on one taxonomy
        checks it before acting on another."""
        blob = json.dumps(self.to_json_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # ----------------------------------------------------------- construction
    @classmethod
    def from_taxon_edges(
        cls,
        ranks: Sequence[str],
        taxa_per_rank: Sequence[Sequence[int]],
        edges: Sequence[tuple[int, int]],
    ) -> TaxonomyTree:
        """Build from raw ``(child_taxon_id, parent_taxon_id)`` edges.

        ``taxa_per_rank[r]`` lists the taxon ids of rank ``r`` (coarse -> fine); taxon ids
        are unique across ranks, as in iNaturalist. Repeated identical edges are fine.
        Raises ``ValueError`` for a child with two parents, a cycle, a parent that is not
        at the adjacent coarser rank, or a taxon without a parent.
        """
        ranks = tuple(ranks)
        if len(taxa_per_rank) != len(ranks):
            raise ValueError(
                f"taxa_per_rank must have one list per rank ({len(ranks)}), got {len(taxa_per_rank)}"
            )
        rank_of: dict[int, int] = {}
        for r, taxa in enumerate(taxa_per_rank):
            for t in taxa:
                t = int(t)
                if t == 0:
                    raise ValueError(f"taxon id 0 means null and cannot be a taxon (rank {ranks[r]!r})")
                if t in rank_of and rank_of[t] != r:
                    raise ValueError(
                        f"taxon id {t} appears at ranks {ranks[rank_of[t]]!r} and {ranks[r]!r};"
                        " taxon ids must be unique across ranks"
                    )
                rank_of[t] = r
        parent_of: dict[int, int] = {}
        for child, parent in edges:
            child, parent = int(child), int(parent)
            if child in parent_of and parent_of[child] != parent:
                raise ValueError(
                    f"taxon {child} has two parents ({parent_of[child]} and {parent});"
                    " every taxon needs a single parent"
                )
            parent_of[child] = parent
        for start in parent_of:
            seen, node = {start}, start
            while node in parent_of:
                node = parent_of[node]
                if node in seen:
                    raise ValueError(f"the parent chain from taxon {start} has a cycle through taxon {node}")
                seen.add(node)
        for child, parent in parent_of.items():
            if child not in rank_of or parent not in rank_of:
                missing = child if child not in rank_of else parent
                raise ValueError(f"edge {child} -> {parent} names taxon {missing}, which is in no rank")
            if rank_of[parent] != rank_of[child] - 1:
                raise ValueError(
                    f"taxon {child} (rank {ranks[rank_of[child]]!r}) has parent {parent} at rank"
                    f" {ranks[rank_of[parent]]!r}; a parent must be at the adjacent coarser rank"
                )
        class_maps = tuple(build_class_map(np.asarray(list(t), dtype=np.int64)) for t in taxa_per_rank)
        parents = [np.zeros(0, dtype=np.int64)]
        for r in range(1, len(ranks)):
            arr = np.zeros(len(class_maps[r]), dtype=np.int64)
            for key, idx in class_maps[r].items():
                if key == "null":
                    continue
                taxon = int(key)
                if taxon not in parent_of:
                    raise ValueError(f"taxon {taxon} at rank {ranks[r]!r} has no parent")
                arr[idx] = class_maps[r - 1][str(parent_of[taxon])]
            parents.append(arr)
        return cls(ranks, class_maps, tuple(parents))

    @classmethod
    def from_labels(cls, ranks: Sequence[str], taxa: np.ndarray) -> TaxonomyTree:
        """Derive the tree from label rows ``(N, n_ranks)`` of taxon ids (coarse -> fine,
        0 = null): every pair of adjacent non-null labels is a ``child -> parent`` edge."""
        taxa = np.asarray(taxa, dtype=np.int64)
        if taxa.ndim != 2 or taxa.shape[1] != len(ranks):
            raise ValueError(f"taxa must have shape (N, {len(ranks)}), got {taxa.shape}")
        taxa_per_rank = [np.unique(col[col != 0]).tolist() for col in taxa.T]
        edges: set[tuple[int, int]] = set()
        for r in range(1, len(ranks)):
            pairs = taxa[:, [r, r - 1]]
            pairs = pairs[(pairs[:, 0] != 0) & (pairs[:, 1] != 0)]
            edges.update(map(tuple, np.unique(pairs, axis=0).tolist()))
        return cls.from_taxon_edges(ranks, taxa_per_rank, sorted(edges))

    # -------------------------------------------------------------- JSON I/O
    def to_json_dict(self) -> dict:
        """A JSON-able dict (the on-disk format of :meth:`save`)."""
        return {
            "ranks": list(self.ranks),
            "class_maps": [dict(m) for m in self.class_maps],
            "parents": [p.astype(int).tolist() for p in self.parents],
        }

    @classmethod
    def from_json_dict(cls, data: Mapping) -> TaxonomyTree:
        """Inverse of :meth:`to_json_dict`, validated."""
        for key in ("ranks", "class_maps", "parents"):
            if key not in data:
                raise ValueError(f"taxonomy JSON lacks the key {key!r}; expected ranks, class_maps, parents")
        return cls(
            tuple(data["ranks"]),
            tuple({str(k): int(v) for k, v in m.items()} for m in data["class_maps"]),
            tuple(np.asarray(p, dtype=np.int64) for p in data["parents"]),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tree as JSON."""
        Path(path).write_text(json.dumps(self.to_json_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaxonomyTree:
        """Read a tree written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"taxonomy JSON not found: {path}")
        # A hand-edited or truncated tree file must name itself: the JSON parser's and the
        # validator's messages alone say neither which file nor that it is the tree.
        data = read_json(path, ValueError, "keys ranks, class_maps, parents")
        try:
            return cls.from_json_dict(data)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            raise ValueError(f"{path}: {err}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaxonomyTree):
            return NotImplemented
        return (
            self.ranks == other.ranks
            and self.class_maps == other.class_maps
            and all(np.array_equal(a, b) for a, b in zip(self.parents, other.parents))
        )

    __hash__ = None  # type: ignore[assignment]
