"""A seeded synthetic ``labels.h5``: a 4-rank taxonomy whose images carry inherited traits.

Why synthetic: the envs must run without downloads, and a benchmark of abstention
needs the property real field photos have: coarse ranks are easy, fine ranks are
hard, and labels go missing (null) at the fine ranks exactly when the photo is too
poor to tell. Each rank adds one visual trait, drawn on top of its parent's:

========  ===================================  =====================================
rank      trait                                what destroys it
========  ===================================  =====================================
order     background hue                       (almost nothing)
family    object shape and object hue          heavy blur, occlusion
genus     stripe orientation and period        moderate blur, noise
species   colour of two small dots             light blur, noise
========  ===================================  =====================================

Every image has an ambiguity level ``a`` in [0, 1] (0 for a ``clean_fraction`` of
images, else uniform) that scales blur, noise and an occluding patch. Labels become a
null suffix as ``a`` (plus a little noise) crosses per-rank thresholds, so "knowing
when not to know" is partly learnable from image quality. Nulls also have causes no
image-quality statistic reveals (each record's cause is stored as ``null_cause``,
:class:`~envs.taxonomy.data.NullCause`), as in real records:

- **observer identified to genus**: in a ``cryptic_genus_fraction`` of genera
  (species complexes), a record keeps only its genus label with probability
  ``cryptic_null_rate``, on sharp images as often as on poor ones;
- **species unseen in training**: ``unseen_species`` species appear only in the val
  and test splits (an explicit ``split`` dataset keeps them out of train); they have
  no species class, so their species label is null;
- **rare species**: species rarer than ``min_species_count`` lose their species label;
- **casual records** lose their species label at random (``casual_null_rate``).

Species are Zipf-imbalanced. The first cause in the order degraded, observer,
unseen, rare, casual that nulls the coarsest rank names the record's cause.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from envs.cache import cache_path, is_complete, publish
from envs.taxonomy.data import SPLIT_CODES, TREE_FILENAME, NullCause, Split, hash_split, write_labels_h5
from envs.taxonomy.tree import TaxonomyTree

__all__ = ["SyntheticConfig", "default_data_path", "generate", "write_synthetic"]

LEVELS = ("L40", "L30", "L20", "L10")
"""Level keys of the four ranks, coarse -> fine (order, family, genus, species)."""

_SHAPES = ("disk", "square", "triangle", "diamond", "ring", "cross")
_PATTERNS = tuple((angle, period) for period in (5.0, 8.0) for angle in (0.0, 45.0, 90.0, 135.0))
_DOT_COLOURS = np.array(
    [[1.0, 0.1, 0.1], [1.0, 1.0, 0.1], [0.1, 1.0, 1.0], [1.0, 1.0, 1.0],
     [0.1, 0.1, 1.0], [1.0, 0.1, 1.0], [0.1, 0.9, 0.1], [0.05, 0.05, 0.05]],
    dtype=np.float32,
)
# ambiguity above which a rank's label is null (order, family, genus, species)
_NULL_THRESHOLDS = np.array([0.95, 0.75, 0.5, 0.3])
_NULL_JITTER = 0.05
_CHUNK = 1000
DATA_VERSION = 2
"""Version of the generator, part of the cache key: v2 added the taxonomic null causes."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic data set (defaults: ~10 s to generate)."""

    n_samples: int = 10_000
    """Images in total, before the 80 / 10 / 10 split."""
    image_size: int = 36
    """Height = width in pixels; 36 is the smallest SB3's default CNN accepts."""
    n_orders: int = 4
    """Taxa at the coarsest rank."""
    families_per_order: int = 3
    """Families in each order (at most 6 shapes)."""
    n_genera: int = 30
    """Genera in total, spread over families (at most 8 per family)."""
    n_species: int = 80
    """Species in total, spread over genera (at most 8 per genus)."""
    imbalance: float = 1.0
    """Zipf exponent of species frequencies (0 = balanced)."""
    clean_fraction: float = 0.5
    """Fraction of images without any degradation."""
    casual_null_rate: float = 0.03
    """Probability that a record loses its species label regardless of the image."""
    min_species_count: int = 20
    """Species with fewer samples lose their species label (rare taxa wiped)."""
    cryptic_genus_fraction: float = 0.15
    """Share of records (taken as whole genera, in a seeded order) in genera that
    observers often identify to genus only."""
    cryptic_null_rate: float = 0.6
    """Probability that a record of such a genus keeps only its genus label."""
    unseen_species: int = 5
    """Species held out of the train split (val / test only, species label null)."""
    seed: int = 0
    """Seed of everything: taxonomy, traits, samples, degradations."""

    def __post_init__(self) -> None:
        n_families = self.n_orders * self.families_per_order
        checks = [
            ("n_samples", self.n_samples, self.n_samples >= 10, ">= 10"),
            ("image_size", self.image_size, 16 <= self.image_size <= 256, "in [16, 256]"),
            ("n_orders", self.n_orders, self.n_orders >= 1, ">= 1"),
            ("families_per_order", self.families_per_order,
             1 <= self.families_per_order <= len(_SHAPES), f"in [1, {len(_SHAPES)}]"),
            ("n_genera", self.n_genera, n_families <= self.n_genera <= n_families * len(_PATTERNS),
             f"in [{n_families}, {n_families * len(_PATTERNS)}] for {n_families} families"),
            ("n_species", self.n_species,
             self.n_genera <= self.n_species <= self.n_genera * len(_DOT_COLOURS),
             f"in [{self.n_genera}, {self.n_genera * len(_DOT_COLOURS)}] for {self.n_genera} genera"),
            ("imbalance", self.imbalance, self.imbalance >= 0, ">= 0"),
            ("clean_fraction", self.clean_fraction, 0 <= self.clean_fraction <= 1, "in [0, 1]"),
            ("casual_null_rate", self.casual_null_rate, 0 <= self.casual_null_rate <= 1, "in [0, 1]"),
            ("min_species_count", self.min_species_count, self.min_species_count >= 0, ">= 0"),
            ("cryptic_genus_fraction", self.cryptic_genus_fraction, 0 <= self.cryptic_genus_fraction <= 1, "in [0, 1]"),
            ("cryptic_null_rate", self.cryptic_null_rate, 0 <= self.cryptic_null_rate <= 1, "in [0, 1]"),
            ("unseen_species", self.unseen_species, 0 <= self.unseen_species < self.n_species,
             f"in [0, {self.n_species - 1}] (fewer than n_species)"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"SyntheticConfig.{name} must be {allowed}, got {value}")

    def digest(self) -> str:
        """Short hash naming the cache directory of this configuration."""
        blob = json.dumps({**asdict(self), "data_version": DATA_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class _Taxonomy:
    """Generated taxa: index arrays linking each taxon to its parent, and trait ids."""

    family_order: np.ndarray  # (n_families,)
    genus_family: np.ndarray  # (n_genera,)
    species_genus: np.ndarray  # (n_species,)
    family_shape: np.ndarray  # (n_families,) index into _SHAPES
    genus_pattern: np.ndarray  # (n_genera,) index into _PATTERNS
    species_colour: np.ndarray  # (n_species,) index into _DOT_COLOURS
    taxon_ids: tuple[np.ndarray, ...]  # per rank, coarse -> fine


def _spread(n_items: int, n_groups: int, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Group index per item: every group gets at least one item and at most ``capacity``."""
    counts = np.ones(n_groups, dtype=np.int64)
    for _ in range(n_items - n_groups):
        open_groups = np.flatnonzero(counts < capacity)
        counts[rng.choice(open_groups)] += 1
    return np.repeat(np.arange(n_groups), counts)


def _within_group_traits(groups: np.ndarray, n_traits: int, rng: np.random.Generator) -> np.ndarray:
    """A trait per item, distinct among items of the same group (siblings look different)."""
    traits = np.empty(len(groups), dtype=np.int64)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        traits[members] = rng.permutation(n_traits)[: len(members)]
    return traits


def _make_taxonomy(cfg: SyntheticConfig, rng: np.random.Generator) -> _Taxonomy:
    n_families = cfg.n_orders * cfg.families_per_order
    family_order = np.repeat(np.arange(cfg.n_orders), cfg.families_per_order)
    genus_family = _spread(cfg.n_genera, n_families, len(_PATTERNS), rng)
    species_genus = _spread(cfg.n_species, cfg.n_genera, len(_DOT_COLOURS), rng)
    sizes = (cfg.n_orders, n_families, cfg.n_genera, cfg.n_species)
    ids = rng.choice(np.arange(1, 1_000_000), size=sum(sizes), replace=False)
    taxon_ids = tuple(np.split(ids, np.cumsum(sizes)[:-1]))
    return _Taxonomy(
        family_order=family_order,
        genus_family=genus_family,
        species_genus=species_genus,
        family_shape=_within_group_traits(family_order, len(_SHAPES), rng),
        genus_pattern=_within_group_traits(genus_family, len(_PATTERNS), rng),
        species_colour=_within_group_traits(species_genus, len(_DOT_COLOURS), rng),
        taxon_ids=taxon_ids,
    )


def _hsv(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """(n,) hues -> (n, 3) RGB floats in [0, 1]."""
    return np.array([colorsys.hsv_to_rgb(float(x) % 1.0, s, v) for x in h], dtype=np.float32)


def _shape_masks(shape: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Bool (n, H, W): inside the object. ``dx``, ``dy`` (n, H, W) in object radii."""
    rad = np.sqrt(dx**2 + dy**2)
    ax, ay = np.abs(dx), np.abs(dy)
    inside = {
        "disk": rad <= 1.0,
        "square": np.maximum(ax, ay) <= 0.85,
        "triangle": (dy >= -0.9) & (dy <= 0.8) & (ax <= 0.55 * (dy + 0.9)),
        "diamond": ax + ay <= 1.15,
        "ring": (rad >= 0.5) & (rad <= 1.0),
        "cross": ((ax <= 0.35) & (ay <= 1.0)) | ((ay <= 0.35) & (ax <= 1.0)),
    }
    return np.select([shape[:, None, None] == i for i in range(len(_SHAPES))],
                     [inside[name] for name in _SHAPES], default=False)


def _render(
    tax: _Taxonomy, species: np.ndarray, ambiguity: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (n, size, size, 3) images of the given species at the given ambiguity."""
    n = len(species)
    genus = tax.species_genus[species]
    family = tax.genus_family[genus]
    order = tax.family_order[family]
    n_orders = int(tax.family_order.max()) + 1
    half = size / 2.0
    coords = (np.arange(size, dtype=np.float32) + 0.5 - half) / half  # pixel centres in [-1, 1]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # (H, W)

    bg_hue = order / n_orders + rng.normal(0.0, 0.015, n)
    background = _hsv(bg_hue, 0.45, 0.6)  # (n, 3)
    slot = family % (len(tax.family_order) // n_orders)  # family index within its order
    obj_colour = _hsv(bg_hue + 0.5 + 0.12 * (slot - 1), 0.6, 0.9)  # (n, 3)

    cx, cy = rng.uniform(-0.12, 0.12, (2, n)).astype(np.float32)
    radius = rng.uniform(0.5, 0.62, n).astype(np.float32)
    dx = (xx[None] - cx[:, None, None]) / radius[:, None, None]  # (n, H, W)
    dy = (yy[None] - cy[:, None, None]) / radius[:, None, None]
    inside = _shape_masks(tax.family_shape[family], dx, dy)  # (n, H, W)

    angle, period = np.array(_PATTERNS, dtype=np.float32)[tax.genus_pattern[genus]].T  # (n,)
    angle = np.deg2rad(angle + rng.normal(0.0, 6.0, n).astype(np.float32))
    along = (xx[None] * np.cos(angle)[:, None, None] + yy[None] * np.sin(angle)[:, None, None]) * half
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * along / period[:, None, None])  # (n, H, W)

    image = np.where(
        inside[..., None],
        obj_colour[:, None, None, :] * (0.55 + 0.45 * stripes[..., None]),
        background[:, None, None, :],
    )  # (n, H, W, 3)

    dot_colour = _DOT_COLOURS[tax.species_colour[species]] + rng.normal(0.0, 0.05, (n, 3))
    dot_radius = 1.7 / half
    for sx in (-0.35, 0.35):
        px = cx + sx * radius + rng.normal(0.0, 0.03, n)
        py = cy - 0.3 * radius + rng.normal(0.0, 0.03, n)
        dot = (xx[None] - px[:, None, None]) ** 2 + (yy[None] - py[:, None, None]) ** 2 <= dot_radius**2
        image = np.where(dot[..., None], dot_colour[:, None, None, :], image)

    image = image * rng.uniform(0.85, 1.15, (n, 1, 1, 1))
    for i in np.flatnonzero(ambiguity > 0):
        a = ambiguity[i]
        image[i] = gaussian_filter(image[i], sigma=(2.2 * a, 2.2 * a, 0.0))
        if rng.random() < a:
            side = int(round((0.25 + 0.35 * a) * size))
            top, left = rng.integers(0, size - side + 1, 2)
            image[i, top : top + side, left : left + side] = 0.5
    image = image + rng.normal(0.0, 1.0, image.shape) * (0.03 + 0.15 * ambiguity)[:, None, None, None]
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _null_causes(
    cfg: SyntheticConfig, tax: _Taxonomy, species: np.ndarray, ambiguity: np.ndarray, unseen: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Null masks (N, 4) coarse -> fine and the :class:`NullCause` of every record (N,)."""
    n = len(species)
    seen_ambiguity = ambiguity + np.where(ambiguity > 0, rng.normal(0.0, _NULL_JITTER, n), 0.0)
    genus_share = np.bincount(tax.species_genus[species], minlength=cfg.n_genera) / n
    order = rng.permutation(cfg.n_genera)
    n_cryptic = int(np.searchsorted(np.cumsum(genus_share[order]), cfg.cryptic_genus_fraction)) + 1
    cryptic_genera = order[:n_cryptic] if cfg.cryptic_genus_fraction > 0 else order[:0]
    by_cause = {c: np.zeros((n, 4), dtype=bool) for c in NullCause if c is not NullCause.NONE}
    by_cause[NullCause.DEGRADED] = seen_ambiguity[:, None] > _NULL_THRESHOLDS[None, :]
    by_cause[NullCause.OBSERVER_GENUS][:, 3] = (
        np.isin(tax.species_genus[species], cryptic_genera) & (rng.random(n) < cfg.cryptic_null_rate)
    )
    by_cause[NullCause.UNSEEN_SPECIES][:, 3] = np.isin(species, unseen)
    by_cause[NullCause.CASUAL][:, 3] = rng.random(n) < cfg.casual_null_rate
    labelled = ~np.any([m[:, 3] for c, m in by_cause.items() if c is not NullCause.RARE_SPECIES], axis=0)
    counts = np.bincount(species[labelled], minlength=cfg.n_species)
    by_cause[NullCause.RARE_SPECIES][:, 3] = np.isin(species, np.flatnonzero(counts < cfg.min_species_count))
    # a null is a suffix: once a rank is null, every finer rank is null too
    suffixes = {c: np.cumsum(m, axis=1) > 0 for c, m in by_cause.items()}
    null = np.any(list(suffixes.values()), axis=0)  # (N, 4)
    causes = np.full(n, NullCause.NONE, dtype=np.int64)
    first_null = np.full(n, 4)
    for cause, suffix in suffixes.items():  # order of NullCause: earlier causes win ties
        first = np.where(suffix.any(axis=1), suffix.argmax(axis=1), 4)
        wins = first < first_null
        causes[wins], first_null[wins] = cause, first[wins]
    return null, causes


def generate(cfg: SyntheticConfig) -> dict[str, object]:
    """Generate the data set in memory.

    Returns a dict with ``identifiers`` (N,) str, ``taxa`` {level: (N,) uint32 taxon ids,
    0 = null}, ``images`` (N, H, W, 3) uint8, ``ambiguity`` (N,) float in [0, 1],
    ``null_cause`` (N,) :class:`NullCause` codes and ``split`` (N,) split codes.
    """
    rng = np.random.default_rng(cfg.seed)
    tax = _make_taxonomy(cfg, rng)
    weights = 1.0 / np.arange(1, cfg.n_species + 1) ** cfg.imbalance
    weights = weights[rng.permutation(cfg.n_species)]
    species = rng.choice(cfg.n_species, size=cfg.n_samples, p=weights / weights.sum())
    ambiguity = np.where(rng.random(cfg.n_samples) < cfg.clean_fraction, 0.0, rng.random(cfg.n_samples))
    images = np.concatenate([
        _render(tax, species[s : s + _CHUNK], ambiguity[s : s + _CHUNK], cfg.image_size, rng)
        for s in range(0, cfg.n_samples, _CHUNK)
    ])

    genus = tax.species_genus[species]
    family = tax.genus_family[genus]
    order = tax.family_order[family]
    classes = np.stack([order, family, genus, species], axis=1)  # (N, 4) coarse -> fine
    taxa = np.stack([tax.taxon_ids[r][classes[:, r]] for r in range(4)], axis=1).astype(np.uint32)
    # unseen species: drawn from the middle half of frequencies (neither the commonest
    # nor too rare for val / test to hold some)
    by_frequency = np.argsort(-weights)
    middle = by_frequency[cfg.n_species // 4 : max(3 * cfg.n_species // 4, cfg.n_species // 4 + cfg.unseen_species)]
    unseen = rng.choice(middle, size=cfg.unseen_species, replace=False)
    null, causes = _null_causes(cfg, tax, species, ambiguity, unseen, rng)
    taxa[null] = 0
    identifiers = np.array([f"synthetic-{cfg.seed}-{i:06d}" for i in range(cfg.n_samples)])
    split = hash_split(identifiers)
    moved = np.isin(species, unseen) & (split == SPLIT_CODES[Split.TRAIN])
    split[moved] = np.where(rng.random(int(moved.sum())) < 0.5, SPLIT_CODES[Split.VAL], SPLIT_CODES[Split.TEST])
    return {
        "identifiers": identifiers,
        "taxa": {level: taxa[:, r] for r, level in enumerate(LEVELS)},
        "images": images,
        "ambiguity": ambiguity,
        "null_cause": causes,
        "split": split,
    }


def write_synthetic(directory: str | os.PathLike[str], cfg: SyntheticConfig) -> Path:
    """Write ``labels.h5`` and ``taxonomy.json`` into ``directory``; returns the labels path.

    Files appear atomically (written under a temporary name, then renamed), so
    concurrent envs never read half a file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = generate(cfg)
    taxa = data["taxa"]
    tree = TaxonomyTree.from_labels(
        [("order", "family", "genus", "species")[r] for r in range(4)],
        np.stack([taxa[level] for level in LEVELS], axis=1),
    )
    suffix = f".tmp-{os.getpid()}"
    tree_tmp = directory / (TREE_FILENAME + suffix)
    tree.save(tree_tmp)
    publish(tree_tmp, directory / TREE_FILENAME)
    labels = directory / "labels.h5"
    labels_tmp = directory / ("labels.h5" + suffix)
    write_labels_h5(
        labels_tmp, identifiers=data["identifiers"], taxa=taxa, images=data["images"],
        split=np.asarray(data["split"], dtype=np.uint8), null_cause=np.asarray(data["null_cause"], dtype=np.uint8),
    )
    publish(labels_tmp, labels)
    return labels


def default_data_path(
    cfg: SyntheticConfig | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """``labels.h5`` of the synthetic set in the cache, generated on first use."""
    cfg = cfg or SyntheticConfig()
    labels = cache_path("taxonomy", f"synthetic-{cfg.digest()}", "labels.h5", override=cache_dir)
    if not (is_complete(labels) and is_complete(labels.parent / TREE_FILENAME)):
        write_synthetic(labels.parent, cfg)
    return labels
