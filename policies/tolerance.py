"""Choose one of a few candidate edge sets per graph: e.g. evolution strength's drop tolerance per AMG level.

On AnisotropicAMG-v0 a per-edge policy makes ~8,000 binary decisions per level for one
scalar reward per episode, and REINFORCE around evolution strength's C never flips one
(README, issue 12). The classical knob around that C is its drop tolerance epsilon. With
``AnisotropicAMG-v0(evolution_features=True, evolution_tolerances=[3, 4, 5, 6, 8])`` every
level's observation carries the C evolution would pick with each tolerance, as ±1 edge
columns; :class:`ToleranceChoicePolicy` picks one column per level (a categorical over K
candidates, conditioned on the pooled GNN embedding of the level's graph, which includes
the level index) and returns that column's edges as the MultiBinary action. So an episode
is 3 categorical decisions at 32 x 32 instead of ~8,000 x 3 Bernoulli bits, and the
action is still the env's ordinary edge selection.

The log-probability of an action is exact: the log of the total probability of the
candidates whose edge set equals it (two tolerances can give the same C). ``entropy`` is
the entropy of the categorical over candidates (an upper bound on the entropy over
distinct edge sets when candidates coincide).
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch_geometric.nn import global_mean_pool

from policies.gnn import CANDIDATE_FEATURES_KEY, PADDED_GRAPH_KEY, EdgeScorer, GNNEdgePolicy, batch_graphs

__all__ = ["DEFAULT_CANDIDATE_FEATURE_SCALE", "PER_EDGE_OPTIONS", "CandidateChoiceDistribution", "ToleranceChoicePolicy"]

DEFAULT_CANDIDATE_FEATURE_SCALE = 10.0
"""Factor on the centred ``candidate_features`` before the linear term: they differ between
candidates by about 0.02-0.1, so a unit of weight is then about a nat."""

PER_EDGE_OPTIONS = ("distribution", "k", "edge_linear_init", "edge_linear_bias", "entropy_rows", "entropy_samples")
""":class:`GNNEdgePolicy` options of its per-edge distribution and scorer path, ignored here (a yml
written for the edge policy can switch ``policy`` without deleting them)."""


def _finite_list(values: list[float] | None, length: int, field: str) -> list[float] | None:
    """``values`` as a list of ``length`` finite floats, or None."""
    if values is None:
        return None
    if (not isinstance(values, (list, tuple)) or len(values) != length
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(float(v)) < float("inf") for v in values)):
        raise ValueError(f"{field} must be None or a list of {length} finite numbers, got {values!r}")
    return [float(v) for v in values]


class CandidateChoiceDistribution(Distribution):
    """Categorical over K candidate edge sets per graph; actions are (B, E) edge vectors.

    Seen by :class:`agents.reinforce.Reinforce` and :class:`agents.row_ppo.RowPPO` as a
    distribution with one "row" per graph (``log_prob_per_row`` (B, 1)).
    """

    def __init__(self) -> None:
        super().__init__()
        self.logits: th.Tensor | None = None
        self.candidates: th.Tensor | None = None

    def proba_distribution_net(self) -> nn.Module:
        """Logits come from :class:`ToleranceChoicePolicy`'s head."""
        return nn.Identity()

    def proba_distribution(self, logits: th.Tensor, candidates: th.Tensor) -> CandidateChoiceDistribution:
        """``logits`` (B, K); ``candidates`` (B, K, E) bool, False on padding edges."""
        self.logits, self.candidates = logits, candidates
        self.distribution = th.distributions.Categorical(logits=logits)
        return self

    def _state(self) -> tuple[th.Tensor, th.Tensor]:
        if self.logits is None or self.candidates is None:
            raise RuntimeError("call proba_distribution(logits, candidates) first")
        return self.logits, self.candidates

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        """(B,) log of the total probability of the candidates equal to each action (B, E)."""
        logits, candidates = self._state()
        matches = (candidates == (actions > 0.5)[:, None, :]).all(dim=-1)  # (B, K)
        if not bool(matches.any(dim=-1).all()):
            raise ValueError("an action is none of the candidate edge sets of its observation")
        log_p = th.log_softmax(logits, dim=-1).masked_fill(~matches, float("-inf"))  # (B, K)
        return th.logsumexp(log_p, dim=-1)  # (B,)

    def log_prob_per_row(self, actions: th.Tensor) -> th.Tensor:
        return self.log_prob(actions)[:, None]  # (B, 1)

    @property
    def row_weight(self) -> th.Tensor:
        logits, _ = self._state()
        return th.ones(logits.shape[0], 1, dtype=th.bool, device=logits.device)  # (B, 1)

    def entropy(self) -> th.Tensor:
        return self.distribution.entropy()  # (B,)

    def mean_row_entropy(self) -> th.Tensor:
        return self.entropy()  # (B,)

    def choice(self, deterministic: bool = False) -> th.Tensor:
        """(B,) candidate index: sampled, or the most probable candidate."""
        logits, _ = self._state()
        return logits.argmax(dim=-1) if deterministic else self.distribution.sample()

    def _edges(self, choice: th.Tensor) -> th.Tensor:
        _, candidates = self._state()
        return candidates[th.arange(candidates.shape[0], device=candidates.device), choice].float()  # (B, E)

    def sample(self) -> th.Tensor:
        return self._edges(self.choice(deterministic=False))

    def mode(self) -> th.Tensor:
        return self._edges(self.choice(deterministic=True))

    def actions_from_params(self, logits: th.Tensor, candidates: th.Tensor, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(logits, candidates)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, logits: th.Tensor, candidates: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(logits, candidates)
        return actions, self.log_prob(actions)


class ToleranceChoicePolicy(GNNEdgePolicy):
    """Actor-critic policy that selects, per graph, the edges of one candidate column.

    The GNN of :class:`policies.gnn.EdgeScorer` embeds the graph; [mean, max] pooling of
    the node embeddings feeds a logits head over the K candidate columns and the value
    head; a linear path from the mean raw node features (which carry the level index on
    AnisotropicAMG-v0) adds to the logits. Everything else (``predict`` on any graph size, SB3 PPO / REINFORCE / row-PPO
    compatibility, saving) is :class:`GNNEdgePolicy`'s.

    Args (``policy_kwargs``, besides :class:`GNNEdgePolicy`'s backbone, hidden_dim,
    n_layers, heads, temperature, optimizer_class, optimizer_kwargs):
        candidate_columns: edge-feature columns holding the candidate sets (+1 = edge in
            the set), e.g. AnisotropicAMG-v0's ``evolution_strong_eps{t}`` columns 10-14 for
            ``evolution_tolerances=[3, 4, 5, 6, 8]``. None (default): the columns the
            observation's ``candidate_features`` describe (its last K edge-feature columns);
            required when it has none.
        initial_choice: candidate the untrained policy prefers (a warm start at a known
            rule, e.g. index 1 = PyAMG's default tolerance 4 above); None: uniform.
        initial_margin: its initial logit advantage over the others (nats, >= 0).
        candidate_feature_scale: when the observation has AnisotropicAMG-v0's
            ``candidate_features`` (K, F) (:mod:`envs.amg.candidates`: the aggregation quality
            of each candidate), a linear term w . (f_k - mean_k f) * scale adds to candidate
            k's logit, w zero at the start (so the warm start is unchanged). The features
            differ between candidates by about 0.02-0.1, so the scale (default 10) makes a
            unit of w about a nat.
        initial_logits: K initial candidate logits (instead of ``initial_choice`` /
            ``initial_margin``), e.g. ``-g * biases`` of the supervised
            ``agents.baselines.amg_tolerance_scorer`` fit.
        candidate_linear_init: initial w (one per candidate feature; needs
            ``candidate_features``), e.g. ``-g * weights / candidate_feature_scale`` of that fit:
            a warm start at the supervised scorer, g nats per unit of predicted log work.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.MultiBinary,
        lr_schedule: Schedule,
        candidate_columns: list[int] | tuple[int, ...] | None = None,
        initial_choice: int | None = None,
        initial_margin: float = 2.0,
        candidate_feature_scale: float = DEFAULT_CANDIDATE_FEATURE_SCALE,
        initial_logits: list[float] | None = None,
        candidate_linear_init: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        n_features = observation_space["edge_features"].shape[-1] if isinstance(observation_space, spaces.Dict) else 0
        n_candidate_features = (observation_space[CANDIDATE_FEATURES_KEY].shape
                                if isinstance(observation_space, spaces.Dict) and CANDIDATE_FEATURES_KEY in observation_space.spaces
                                else None)
        # candidate_features' rows describe the last K edge-feature columns, in order
        described = None if n_candidate_features is None else list(range(n_features - n_candidate_features[0], n_features))
        if candidate_columns is None and described is not None:
            candidate_columns = described
        columns = [int(c) for c in candidate_columns] if isinstance(candidate_columns, (list, tuple)) else None
        if not columns or len(set(columns)) != len(columns) or not all(0 <= c < n_features for c in columns):
            raise ValueError(f"candidate_columns must be >= 1 distinct edge-feature columns in [0, {n_features}) "
                             f"(required when the observation has no {CANDIDATE_FEATURES_KEY}), got {candidate_columns!r}")
        if initial_choice is not None and not (isinstance(initial_choice, int) and 0 <= initial_choice < len(columns)):
            raise ValueError(f"initial_choice must be None or an index in [0, {len(columns)}), got {initial_choice!r}")
        if not (isinstance(initial_margin, (int, float)) and 0.0 <= initial_margin < float("inf")):
            raise ValueError(f"initial_margin must be a finite number >= 0, got {initial_margin!r}")
        if not (isinstance(candidate_feature_scale, (int, float)) and 0.0 < candidate_feature_scale < float("inf")):
            raise ValueError(f"candidate_feature_scale must be a finite number > 0, got {candidate_feature_scale!r}")
        if described is not None and columns != described:
            raise ValueError(f"candidate_columns must be {described} (the candidates the observation's "
                             f"candidate_features describe, in order), got {columns}")
        self.initial_logits = _finite_list(initial_logits, len(columns), "initial_logits")
        self.candidate_linear_init = _finite_list(candidate_linear_init, (n_candidate_features or (0, 0))[1],
                                                  "candidate_linear_init (one per candidate feature)")
        for per_edge in PER_EDGE_OPTIONS:
            kwargs.pop(per_edge, None)
        self.candidate_columns, self.initial_choice, self.initial_margin = columns, initial_choice, float(initial_margin)
        self.candidate_feature_scale = float(candidate_feature_scale)
        self.n_candidate_features = 0 if n_candidate_features is None else int(n_candidate_features[1])
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        self.action_dist = CandidateChoiceDistribution()

    def _build(self, lr_schedule: Schedule) -> None:
        node_dim = self.observation_space["node_features"].shape[-1]
        edge_dim = self.observation_space["edge_features"].shape[-1]
        self.scorer = EdgeScorer(node_dim, edge_dim, self.hidden_dim, self.n_layers, self.backbone, self.heads)
        self.choice_head = nn.Sequential(
            nn.Linear(2 * self.hidden_dim, self.hidden_dim), nn.ReLU(), nn.Linear(self.hidden_dim, len(self.candidate_columns))
        )
        nn.init.zeros_(self.choice_head[-1].weight)  # the warm start's preference, exactly, until trained
        # a linear path from the graph's mean raw node features (AnisotropicAMG-v0: the level index
        # among them), so a per-level preference is a few weights rather than a change of the GNN
        self.node_linear = nn.Linear(node_dim, len(self.candidate_columns), bias=False)
        nn.init.zeros_(self.node_linear.weight)
        # the candidates' own lookahead features, scored with weights shared across candidates
        self.candidate_linear = nn.Linear(self.n_candidate_features, 1, bias=False) if self.n_candidate_features else None
        if self.candidate_linear is not None:
            nn.init.zeros_(self.candidate_linear.weight)
            if self.candidate_linear_init is not None:
                with th.no_grad():
                    self.candidate_linear.weight.copy_(th.tensor([self.candidate_linear_init]))
        with th.no_grad():
            bias = th.zeros(len(self.candidate_columns))
            if self.initial_logits is not None:
                bias = th.tensor(self.initial_logits)
            elif self.initial_choice is not None:
                bias[self.initial_choice] = self.initial_margin
            self.choice_head[-1].bias.copy_(bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for per_edge in PER_EDGE_OPTIONS:
            data.pop(per_edge, None)
        data.update(candidate_columns=self.candidate_columns, initial_choice=self.initial_choice,
                    initial_margin=self.initial_margin, candidate_feature_scale=self.candidate_feature_scale,
                    initial_logits=self.initial_logits, candidate_linear_init=self.candidate_linear_init)
        return data

    def _evaluate(self, obs: PyTorchObs) -> tuple[CandidateChoiceDistribution, th.Tensor]:  # type: ignore[override]
        """The choice distribution and values (B, 1) for a batch of Dict observations."""
        graph_size = obs.get(PADDED_GRAPH_KEY)
        edge_features = obs["edge_features"].float()  # (B, E, Fe)
        graph = batch_graphs(obs["node_features"].float(), obs["edge_index"], edge_features, graph_size)
        h, _ = self.scorer.node_states(graph)  # (B*N, H)
        pooled = self.scorer.pooled(h, graph)  # (B, 2H)
        x, node_graph = graph.x, graph.node_graph  # (B*N, F), (B*N,)
        if graph.node_valid is not None:
            x, node_graph = x[graph.node_valid], node_graph[graph.node_valid]
        mean_x = global_mean_pool(x, node_graph, graph.n_graphs)  # (B, F)
        candidates = edge_features[..., self.candidate_columns] > 0  # (B, E, K)
        if graph.edge_valid is not None:  # padding edges are in no candidate set
            candidates = candidates & graph.edge_valid.view(graph.n_graphs, graph.n_edges, 1)
        logits = self.choice_head(pooled) + self.node_linear(mean_x)  # (B, K)
        if self.candidate_linear is not None:
            features = obs[CANDIDATE_FEATURES_KEY].float()  # (B, K, F)
            centred = (features - features.mean(dim=1, keepdim=True)) * self.candidate_feature_scale
            logits = logits + self.candidate_linear(centred).squeeze(-1)
        distribution = self.action_dist.proba_distribution(
            logits / self.temperature, candidates.permute(0, 2, 1)
        )  # logits (B, K), candidates (B, K, E)
        return distribution, self.scorer.value_head(pooled)  # (B, 1)

    def choice_probabilities(self, observation: dict[str, Any]) -> th.Tensor:
        """(B, K) or (K,) probabilities of the candidates for one or a batch of observations (diagnostics)."""
        obs, vectorized = self.obs_to_tensor(observation)
        with th.no_grad():
            probabilities = self.get_distribution(obs).distribution.probs  # (B, K)
        return probabilities if vectorized else probabilities[0]
