"""Reference agents with SB3's ``predict`` signature, for benchmarks and eval.json.

Env-specific heuristics live here too, one class each, named after what they do.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["RandomAgent"]


class RandomAgent:
    """Uniform random actions from the action space, restricted to allowed actions
    when the caller passes ``action_masks`` (True = allowed)."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(int(self.rng.integers(2**31)))

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[Any, Any]:
        """Ignore the observation; ``deterministic`` has no meaning for a random agent."""
        if action_masks is None:
            return self.action_space.sample(), state
        masks = np.asarray(action_masks, dtype=bool)
        if isinstance(self.action_space, gym.spaces.Discrete):
            allowed = np.flatnonzero(masks.reshape(-1))
            if allowed.size == 0:
                raise ValueError("action_masks allows no action")
            return np.int64(self.rng.choice(allowed)), state
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            splits = np.split(masks.reshape(-1), np.cumsum(self.action_space.nvec)[:-1])
            action = np.array([self.rng.choice(np.flatnonzero(m)) for m in splits], dtype=np.int64)
            return action, state
        raise TypeError(
            f"action_masks given for unsupported action space {type(self.action_space).__name__};"
            " expected Discrete or MultiDiscrete"
        )


# --------------------------------------------------------------------- Prostate-v0
# Heuristics for Prostate-v0 (envs.prostate): they read ``prostate_mask`` and
# ``selected`` from the observation, so they work with or without ``action_masks``.

__all__ += ["ProstateCenterAgent", "ProstateRandomCellAgent", "ProstateStopAgent"]


def _prostate_free_cells(observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> np.ndarray:
    """(G*G,) bool: prostate cells not chosen yet (and allowed by the masks, if given)."""
    free = (np.asarray(observation["prostate_mask"]) > 0) & ~(np.asarray(observation["selected"]) > 0)
    free = free.reshape(-1)
    if action_masks is not None:
        free &= np.asarray(action_masks, dtype=bool).reshape(-1)[: free.size]
    return free


def _prostate_predict(choose, action_space: gym.Space, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
    """Apply ``choose(obs, masks) -> action`` to one observation or a batch of them."""
    batched = np.asarray(observation["prostate_mask"]).ndim == 3
    if not batched:
        return choose(observation, action_masks)
    n = len(observation["prostate_mask"])
    masks = [None] * n if action_masks is None else np.asarray(action_masks).reshape(n, -1)
    return np.stack([choose({k: v[i] for k, v in observation.items()}, masks[i]) for i in range(n)])


class ProstateCenterAgent:
    """Prostate-v0 heuristic: the free prostate cells nearest the prostate's centroid
    (sequential: one per step, STOP when none is left; one-shot: the k nearest)."""

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        prostate = np.asarray(observation["prostate_mask"]) > 0
        G = prostate.shape[0]
        rows, cols = np.divmod(np.arange(G * G), G)
        if prostate.any():
            centre_r, centre_c = np.argwhere(prostate).mean(axis=0)
        else:
            centre_r = centre_c = (G - 1) / 2
        distance = (rows - centre_r) ** 2 + (cols - centre_c) ** 2
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            free = _prostate_free_cells(observation, None if action_masks is None else np.asarray(action_masks).reshape(-1)[: G * G])
            order = np.lexsort((np.arange(G * G), distance))
            chosen = [c for c in order if free[c]][: len(self.action_space.nvec)]
            chosen += [chosen[-1] if chosen else 0] * (len(self.action_space.nvec) - len(chosen))
            return np.array(chosen, dtype=np.int64)
        free = _prostate_free_cells(observation, action_masks)
        if not free.any():
            return np.int64(G * G)  # STOP
        return np.int64(np.flatnonzero(free)[np.argmin(distance[free])])

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Deterministic whatever ``deterministic`` says."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


class ProstateRandomCellAgent:
    """Prostate-v0 baseline "random valid points": a uniformly random free prostate cell per
    step, never STOP while a cell is free (so episodes use all k points)."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        free = _prostate_free_cells(observation, action_masks)
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            k = len(self.action_space.nvec)
            cells = np.flatnonzero(free)
            return self.rng.choice(cells, size=k, replace=len(cells) < k).astype(np.int64)
        if not free.any():
            return np.int64(free.size)  # STOP
        return np.int64(self.rng.choice(np.flatnonzero(free)))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Random whatever ``deterministic`` says (seeded at construction)."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


class ProstateStopAgent:
    """Prostate-v0 baseline "no points": STOP at once (the env needs ``min_points=0``;
    otherwise STOP is masked and every step is wasted, with the same outcome)."""

    def __init__(self, action_space: gym.Space) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"ProstateStopAgent needs the sequential (Discrete) action space, got {action_space}")
        self.action_space = action_space

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]:
        """The STOP action (the last one)."""
        stop = np.int64(self.action_space.n - 1)
        if np.asarray(observation["prostate_mask"]).ndim == 3:
            return np.full(len(observation["prostate_mask"]), stop), state
        return stop, state


# --------------------------------------------------------------------- Taxonomy-v0
# The threshold baseline of Taxonomy-v0 / TaxonomyMultitask-v0 (envs.taxonomy): a
# Phase 1 classifier (policies.phase1) that abstains when it is not confident enough.

from policies.phase1 import HierarchicalClassifier, class_probabilities  # noqa: E402

__all__ += ["TaxonomyThresholdAgent"]


class TaxonomyThresholdAgent:
    """Taxonomy baseline: the Phase 1 model's top class at each rank, abstaining when its
    top softmax probability (renormalised over the classes the masks allow) is below
    that rank's threshold. Thresholds of 0 never abstain (pure Phase 1); thresholds are
    tuned on the validation split by :func:`benchmarks.taxonomy.tune_thresholds`.
    Works on both the sequential (``obs["rank"]``) and the multitask observation."""

    def __init__(self, model: HierarchicalClassifier, thresholds: Any, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self.num_classes = tuple(int(n) for n in model.num_classes)
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.shape != (len(self.num_classes),) or not ((thresholds >= 0) & (thresholds <= 1)).all():
            raise ValueError(
                f"thresholds must be {len(self.num_classes)} values in [0, 1] (one per rank), got {thresholds.tolist()}"
            )
        self.thresholds = thresholds

    def _decide(self, probs: np.ndarray, allowed: np.ndarray | None, rank: int) -> int | None:
        """Class index (>= 1) or None (abstain) from one rank's (K_r,) probabilities."""
        if allowed is not None:
            probs = probs * allowed
        if probs.sum() <= 0:
            return None
        probs = probs / probs.sum()
        top = int(probs.argmax())
        return None if probs[top] < self.thresholds[rank] else top + 1

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Deterministic whatever ``deterministic`` says."""
        images = np.asarray(observation["image"])
        batched = images.ndim == 4
        images = images if batched else images[None]  # (B, 3, H, W)
        probs = class_probabilities(self.model, images.transpose(0, 2, 3, 1), self.device)  # [(B, K_r)]
        masks = None if action_masks is None else np.asarray(action_masks, dtype=bool).reshape(len(images), -1)
        sequential = "rank" in observation
        ranks = np.asarray(observation["rank"]).reshape(len(images), -1).argmax(axis=1) if sequential else None
        actions = []
        for b in range(len(images)):
            if sequential:
                r = int(ranks[b])
                abstain = max(self.num_classes)
                allowed = None if masks is None else masks[b, 1 : self.num_classes[r]]
                choice = self._decide(probs[r][b], allowed, r)
                actions.append(abstain if choice is None else choice)
            else:
                offsets = np.concatenate([[0], np.cumsum(np.array(self.num_classes) + 1)])
                row = []
                for r, n in enumerate(self.num_classes):
                    allowed = None if masks is None else masks[b, offsets[r] + 1 : offsets[r] + n]
                    choice = self._decide(probs[r][b], allowed, r)
                    row.append(n if choice is None else choice)
                actions.append(row)
        out = np.asarray(actions, dtype=np.int64)
        return (out if batched else out[0]), state


# --- AnisotropicAMG-v0 ------------------------------------------------------------------
__all__ += ["AMGDirectionAgent", "AMGRandomKPerRowAgent"]


def _amg_top_k_per_row(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Bool (E,): the k highest-scoring edges of every row (rows sorted or not; ties: lower index)."""
    order = np.lexsort((np.arange(rows.size), -scores, rows))  # by row, then score descending
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")  # (E,) first position of each row
    rank = np.arange(rows.size) - starts  # (E,) rank within the row
    selected = np.zeros(rows.size, dtype=bool)
    selected[order[rank < k]] = True
    return selected


def _amg_batched(observation: dict[str, np.ndarray], select: Any) -> np.ndarray:
    if np.asarray(observation["edge_index"]).ndim == 3:
        n = len(observation["edge_index"])
        return np.stack([select({key: value[i] for key, value in observation.items()}) for i in range(n)])
    return select(observation)


class AMGRandomKPerRowAgent:
    """AnisotropicAMG-v0 baseline: k edges per row uniformly at random (without replacement).

    Works on any grid size; the action is a MultiBinary (E,) int8 vector.
    """

    def __init__(self, k: int, seed: int | None = None) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (edges per row) must be an integer >= 1, got {k!r}")
        self.k = k
        self.rng = np.random.default_rng(seed)

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        rows = np.asarray(observation["edge_index"])[0].astype(np.int64)  # (E,)
        return _amg_top_k_per_row(rows, self.rng.random(rows.size), self.k).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """``deterministic`` is ignored: the agent is random by definition."""
        return _amg_batched(observation, self._select), state


class AMGDirectionAgent:
    """AnisotropicAMG-v0 baseline: the k neighbours best aligned with the strong diffusion direction.

    From the observation only: per row, M = sum_j (-A_ij / A_ii) o_j o_j^T over the
    neighbour offsets o_j (raw grid steps, diagonal ones of length sqrt 2) is
    proportional to the 9-point stencil's diffusion tensor Q diag(1, eps) Q^T; its
    principal eigenvector is the strong direction v. Edges are ranked by |cos(o_j, v)|,
    ties by |A_ij| (the signs of o_j do not matter: M is quadratic in o_j). Computed
    from the edge features ``a_over_diagonal``, ``cos_2phi``, ``sin_2phi`` and
    ``is_diagonal`` of :data:`envs.amg.graph.EDGE_FEATURE_NAMES`.
    """

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (edges per row) must be an integer >= 1, got {k!r}")
        self.k = k

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        from envs.amg.graph import EDGE_FEATURE_NAMES

        features = np.asarray(observation["edge_features"], dtype=np.float64)  # (E, Fe)
        column = {name: features[:, i] for i, name in enumerate(EDGE_FEATURE_NAMES)}
        rows = np.asarray(observation["edge_index"])[0].astype(np.int64)  # (E,)
        phi = 0.5 * np.arctan2(column["sin_2phi"], column["cos_2phi"])  # (E,) edge angle, up to a sign
        direction = np.stack([np.cos(phi), np.sin(phi)], axis=1)  # (E, 2) unit vector, up to a sign
        offset = direction * np.where(column["is_diagonal"] > 0.5, np.sqrt(2.0), 1.0)[:, None]  # (E, 2)
        coupling = column["a_over_diagonal"]  # (E,)
        second_moment = coupling[:, None, None] * offset[:, :, None] * offset[:, None, :]  # (E, 2, 2)
        tensor = np.zeros((rows.max() + 1, 2, 2))
        np.add.at(tensor, rows, second_moment)  # (N, 2, 2)
        strong = np.linalg.eigh(tensor)[1][:, :, -1]  # (N, 2) eigenvector of the largest eigenvalue
        alignment = np.abs(np.einsum("ed,ed->e", direction, strong[rows]))  # (E,)
        score = alignment + 1e-6 * np.abs(column["a_row_normalised"])  # (E,)
        return _amg_top_k_per_row(rows, score, self.k).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        return _amg_batched(observation, self._select), state
