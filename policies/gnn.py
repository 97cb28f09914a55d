"""GNN edge scorer and the SB3 policy that turns its scores into edge selections.

Observations are padded Dict graphs (``node_features`` (B, N, F), ``edge_index``
(B, 2, E), ``edge_features`` (B, E, Fe)), e.g. from AnisotropicAMG-v0. The B graphs
are batched into one disconnected graph by offsetting node indices (vectorised, no
``Batch.from_data_list``). The scorer gives one logit per edge; the policy lays the
logits out per source row, (B, R = N, C = max out-degree), and hands them to a per-row
distribution of :mod:`policies.distributions`:

- ``topk`` (default): exactly k edges per row without replacement (Plackett-Luce).
  ``log_prob`` is the exact log-probability of the selected *set* of every row and
  ``entropy`` the exact entropy over sets, summed over rows, so SB3's PPO ratios and
  entropy bonus are those of the top-k policy, not of independent Bernoullis.
- ``bernoulli``: independent keep/drop per edge (variable count per row).

Actions are MultiBinary(E) vectors in the observation's edge order. The policy is
size-agnostic: ``predict`` accepts graphs of any size, so a policy trained on 32 x 32
grids runs on 128 x 128 ones.

Padded graphs (AnisotropicAMG-v0's multi-level mode) carry a fourth key,
``graph_size`` (B, 2) = [valid nodes, valid edges]: the valid nodes and edges are the
leading ones, padding edges are dropped before message passing, get no logit, are
never selected and do not enter log-probabilities, entropies or the value's pooling.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv, global_max_pool, global_mean_pool
from torch_geometric.utils import scatter

from policies.distributions import PerRowBernoulliDistribution, PerRowTopKDistribution
from rewards.choices import parse_choice

__all__ = [
    "OBSERVATION_KEYS",
    "PADDED_GRAPH_KEY",
    "Backbone",
    "EdgeScorer",
    "EdgeSelectionDistribution",
    "GNNEdgePolicy",
    "GraphBatch",
    "RowLayout",
    "SelectionDistribution",
    "batch_graphs",
    "row_layout",
]

OBSERVATION_KEYS = ("node_features", "edge_index", "edge_features")
PADDED_GRAPH_KEY = "graph_size"
"""Optional observation key: (B, 2) int [valid nodes, valid edges] of padded graphs."""
CANDIDATE_FEATURES_KEY = "candidate_features"
"""Optional observation key: (B, K, F) features of K candidate edge sets (AnisotropicAMG-v0 with
``evolution_tolerances``), read by :class:`policies.tolerance.ToleranceChoicePolicy`, ignored here."""


def _valid_keys(keys: set[str] | None) -> bool:
    """The graph keys, plus any of the optional ones."""
    return keys is not None and set(OBSERVATION_KEYS) <= keys and keys - set(OBSERVATION_KEYS) <= {PADDED_GRAPH_KEY, CANDIDATE_FEATURES_KEY}


class Backbone(str, Enum):
    """Message-passing layer of the scorer (torch_geometric core).

    - ``gat``: GATConv with the encoded edge features in the attention (about 3x the
      cost of ``sage`` on CPU).
    - ``gcn``: GCNConv (symmetric-normalised neighbour mean; ignores edge features).
    - ``sage``: SAGEConv (mean aggregation; ignores edge features). Default.

    Edge features always reach the logits through the edge encoder and the edge head.
    """

    GAT = "gat"
    GCN = "gcn"
    SAGE = "sage"


class SelectionDistribution(str, Enum):
    """How edge logits become a selection.

    - ``topk``: exactly min(k, degree) edges per row, without replacement.
    - ``bernoulli``: each edge independently with probability sigmoid(logit).
    """

    TOPK = "topk"
    BERNOULLI = "bernoulli"


@dataclass(frozen=True)
class GraphBatch:
    """B padded graphs as one disconnected graph."""

    x: th.Tensor
    """(B * N, F) node features."""
    edge_index: th.Tensor
    """(2, B * E) long, node indices offset by b * N."""
    edge_attr: th.Tensor
    """(B * E, Fe) edge features."""
    node_graph: th.Tensor
    """(B * N,) long: which graph each node belongs to."""
    n_graphs: int
    n_nodes: int
    """N, nodes per graph."""
    n_edges: int
    """E, edges (slots) per graph."""
    edge_valid: th.Tensor | None = None
    """(B * E,) bool: which edge slots are real (None: all); ``edge_index``/``edge_attr`` hold the real ones only."""
    node_valid: th.Tensor | None = None
    """(B * N,) bool: which nodes are real (None: all); padding nodes are isolated and left out of pooling."""


def graph_validity(graph_size: th.Tensor, n_nodes: int, n_edges: int) -> tuple[th.Tensor, th.Tensor]:
    """(B, 2) [valid nodes, valid edges] -> node mask (B, N) and edge mask (B, E), leading entries valid."""
    sizes = graph_size.long()  # (B, 2)
    nodes = th.arange(n_nodes, device=sizes.device)[None, :] < sizes[:, :1]  # (B, N)
    edges = th.arange(n_edges, device=sizes.device)[None, :] < sizes[:, 1:]  # (B, E)
    return nodes, edges


def batch_graphs(
    node_features: th.Tensor,
    edge_index: th.Tensor,
    edge_features: th.Tensor,
    graph_size: th.Tensor | None = None,
) -> GraphBatch:
    """Stack (B, N, F), (B, 2, E), (B, E, Fe) into one graph by offsetting node indices;
    with ``graph_size`` (B, 2), only the valid leading edges of each graph are kept."""
    n_graphs, n_nodes, _ = node_features.shape
    n_edges = edge_index.shape[-1]
    offsets = th.arange(n_graphs, device=node_features.device) * n_nodes  # (B,)
    shifted = edge_index.long() + offsets[:, None, None]  # (B, 2, E)
    flat_index = shifted.permute(1, 0, 2).reshape(2, n_graphs * n_edges)  # (2, B*E)
    flat_attr = edge_features.reshape(n_graphs * n_edges, -1)  # (B*E, Fe)
    edge_valid = node_valid = None
    if graph_size is not None:
        nodes, edges = graph_validity(graph_size, n_nodes, n_edges)  # (B, N), (B, E)
        edge_valid, node_valid = edges.reshape(-1), nodes.reshape(-1)  # (B*E,), (B*N,)
        flat_index, flat_attr = flat_index[:, edge_valid], flat_attr[edge_valid]  # (2, V), (V, Fe)
    return GraphBatch(
        x=node_features.reshape(n_graphs * n_nodes, -1),  # (B*N, F)
        edge_index=flat_index,
        edge_attr=flat_attr,
        node_graph=th.arange(n_graphs, device=node_features.device).repeat_interleave(n_nodes),  # (B*N,)
        n_graphs=n_graphs,
        n_nodes=n_nodes,
        n_edges=n_edges,
        edge_valid=edge_valid,
        node_valid=node_valid,
    )


@dataclass(frozen=True)
class RowLayout:
    """Where each edge sits in the per-row (B, R, C) layout of the distributions."""

    rows: th.Tensor
    """(B, E) long: source node of each edge (the row)."""
    slots: th.Tensor
    """(B, E) long: position of the edge among its row's edges."""
    mask: th.Tensor
    """(B, R, C) bool: True where a slot holds an edge."""
    valid: th.Tensor
    """(B, E) bool: real edges (padding edges have no slot: never selected, value 0)."""

    def _valid_index(self) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        batch, edge = self.valid.nonzero(as_tuple=True)  # (V,), (V,)
        return batch, edge, self.rows[batch, edge], self.slots[batch, edge]

    def to_rows(self, edge_values: th.Tensor, fill: float = 0.0) -> th.Tensor:
        """(B, E) -> (B, R, C), ``fill`` in empty slots."""
        out = edge_values.new_full(self.mask.shape, fill)  # (B, R, C)
        batch, edge, rows, slots = self._valid_index()
        out[batch, rows, slots] = edge_values[batch, edge]
        return out

    def to_edges(self, row_values: th.Tensor) -> th.Tensor:
        """(B, R, C) -> (B, E); 0 on padding edges."""
        out = row_values.new_zeros(self.valid.shape)  # (B, E)
        batch, edge, rows, slots = self._valid_index()
        out[batch, edge] = row_values[batch, rows, slots]
        return out


def row_layout(edge_index: th.Tensor, n_nodes: int, edge_valid: th.Tensor | None = None) -> RowLayout:
    """Per-row layout of (B, 2, E) edge lists whose (valid, leading) sources are sorted (CSR order)."""
    rows = edge_index[:, 0].long()  # (B, E)
    valid = th.ones_like(rows, dtype=th.bool) if edge_valid is None else edge_valid  # (B, E)
    rows = rows.masked_fill(~valid, 0)  # (B, E)
    if rows.shape[1] > 1 and bool(((rows[:, 1:] < rows[:, :-1]) & valid[:, 1:]).any()):
        raise ValueError("edge_index sources must be sorted (CSR order) to lay edges out per row")
    counts = th.zeros(rows.shape[0], n_nodes, dtype=th.long, device=rows.device).scatter_add_(
        1, rows, valid.long()
    )  # (B, N)
    starts = counts.cumsum(dim=1) - counts  # (B, N)
    slots = (th.arange(rows.shape[1], device=rows.device)[None, :] - starts.gather(1, rows)).masked_fill(~valid, 0)  # (B, E)
    n_slots = max(int(counts.max()), 1)
    mask = th.zeros(rows.shape[0], n_nodes, n_slots, dtype=th.bool, device=rows.device)  # (B, R, C)
    batch, edge = valid.nonzero(as_tuple=True)  # (V,), (V,)
    mask[batch, rows[batch, edge], slots[batch, edge]] = True
    return RowLayout(rows=rows, slots=slots, mask=mask, valid=valid)


def _conv(backbone: Backbone, hidden_dim: int, heads: int) -> nn.Module:
    if backbone is Backbone.GAT:
        return GATConv(hidden_dim, hidden_dim, heads=heads, concat=False, edge_dim=hidden_dim)
    if backbone is Backbone.GCN:
        return GCNConv(hidden_dim, hidden_dim)
    return SAGEConv(hidden_dim, hidden_dim)


class EdgeScorer(nn.Module):
    """Edge logits from node embeddings and edge features; optional graph value.

    Edge encoder -> node state = node encoder + mean of the node's outgoing edge codes
    (each row sees its whole stencil) -> ``n_layers`` residual message-passing layers
    -> logit_ij = MLP([h_i, h_j, e_ij]) + w . raw_e_ij; value = MLP([mean pool, max pool]).
    The linear path ``w`` (zero-initialised, like the MLP's output layer) lets a rule
    such as "prefer edges aligned with the strong direction" be one weight, which
    REINFORCE's noisy gradient finds far sooner than the same rule through the MLP.
    ``edge_linear_init`` (one weight per edge feature) starts ``w`` at a given rule
    instead, e.g. the direction heuristic (weight 1 on AnisotropicAMG's ``alignment``):
    a warm start that training must then improve on. ``edge_linear_bias`` (None: no bias)
    adds a learnable bias to that path, so that a threshold rule ``w . e > t`` on a feature
    (select an edge when logit > 0) is expressible, e.g. w = W on ``evolution_measure``
    and bias -W t.
    """

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        hidden_dim: int = 16,
        n_layers: int = 2,
        backbone: Backbone | str = Backbone.SAGE,
        heads: int = 2,
        value_head: bool = True,
        edge_linear_init: tuple[float, ...] | list[float] | None = None,
        edge_linear_bias: float | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (("node_dim", node_dim, 1), ("edge_dim", edge_dim, 1), ("hidden_dim", hidden_dim, 1),
                                 ("n_layers", n_layers, 0), ("heads", heads, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.backbone = parse_choice(Backbone, backbone, "backbone")
        self.node_encoder = nn.Sequential(nn.Linear(node_dim, hidden_dim), nn.ReLU())
        self.edge_encoder = nn.Sequential(
            nn.Linear(edge_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU()
        )
        self.convs = nn.ModuleList(_conv(self.backbone, hidden_dim, heads) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in range(n_layers))
        self.edge_head = nn.Sequential(nn.Linear(3 * hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        nn.init.normal_(self.edge_head[-1].weight, std=1e-3)  # near-uniform selection at start
        nn.init.zeros_(self.edge_head[-1].bias)
        self.edge_linear = nn.Linear(edge_dim, 1, bias=edge_linear_bias is not None)
        nn.init.zeros_(self.edge_linear.weight)
        if edge_linear_bias is not None:
            nn.init.constant_(self.edge_linear.bias, float(edge_linear_bias))
        if edge_linear_init is not None:
            if len(edge_linear_init) != edge_dim:
                raise ValueError(f"edge_linear_init must have one weight per edge feature ({edge_dim}), "
                                 f"got {len(edge_linear_init)}")
            with th.no_grad():
                self.edge_linear.weight.copy_(th.as_tensor([list(edge_linear_init)], dtype=th.float32))
        self.value_head = (
            nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1)) if value_head else None
        )

    def node_states(self, graph: GraphBatch) -> tuple[th.Tensor, th.Tensor]:
        """Node embeddings h (B*N, H) after message passing, and the edge codes (V, H)."""
        source, _ = graph.edge_index  # (V,)
        edge_code = self.edge_encoder(graph.edge_attr)  # (V, H)
        row_context = scatter(edge_code, source, dim=0, dim_size=graph.x.shape[0], reduce="mean")  # (B*N, H)
        h = self.node_encoder(graph.x) + row_context  # (B*N, H)
        for conv, norm in zip(self.convs, self.norms):
            if self.backbone is Backbone.GAT:
                update = conv(h, graph.edge_index, edge_attr=edge_code)  # (B*N, H)
            else:
                update = conv(h, graph.edge_index)  # (B*N, H)
            h = norm(h + th.relu(update))  # (B*N, H)
        return h, edge_code

    @staticmethod
    def pooled(h: th.Tensor, graph: GraphBatch) -> th.Tensor:
        """[mean, max] of the valid nodes' embeddings per graph, (B, 2H)."""
        pooled_h, pooled_graph = h, graph.node_graph  # (B*N, H), (B*N,)
        if graph.node_valid is not None:
            pooled_h, pooled_graph = h[graph.node_valid], graph.node_graph[graph.node_valid]  # (V_n, H), (V_n,)
        return th.cat(
            [global_mean_pool(pooled_h, pooled_graph, graph.n_graphs), global_max_pool(pooled_h, pooled_graph, graph.n_graphs)],
            dim=-1,
        )  # (B, 2H)

    def forward(self, graph: GraphBatch) -> tuple[th.Tensor, th.Tensor | None]:
        """Edge logits (B, E) and values (B,) (None without a value head)."""
        source, target = graph.edge_index  # (V,), (V,)
        h, edge_code = self.node_states(graph)  # (B*N, H), (V, H)
        logits = self.edge_head(th.cat([h[source], h[target], edge_code], dim=-1)) + self.edge_linear(graph.edge_attr)  # (V, 1)
        if graph.edge_valid is not None:  # padding edge slots get logit 0 (they are never candidates)
            logits = logits.new_zeros(graph.n_graphs * graph.n_edges, 1).index_copy(
                0, graph.edge_valid.nonzero().squeeze(-1), logits
            )  # (B*E, 1)
        logits = logits.view(graph.n_graphs, graph.n_edges)  # (B, E)
        if self.value_head is None:
            return logits, None
        return logits, self.value_head(self.pooled(h, graph)).squeeze(-1)  # (B, E), (B,)


class EdgeSelectionDistribution(Distribution):
    """A per-row distribution seen through a :class:`RowLayout`: actions are (B, E) edge vectors.

    ``log_prob`` / ``entropy`` are (B,) sums over rows (the joint of independent rows);
    ``log_prob_per_row`` / ``entropy_per_row`` give (B, R), and ``row_weight`` (B, R)
    marks rows that have at least one candidate, for per-row averages.

    ``entropy_rows``: when an int, ``entropy`` and ``mean_row_entropy`` evaluate the exact
    per-row entropy on that many rows per graph drawn uniformly without replacement
    (an unbiased estimate, with gradient, of the sum / mean over rows; the draw uses
    torch's global RNG); None evaluates every row. The exact top-k entropy costs
    about 160 subset terms per row, which dominates the update on 32 x 32 grids.
    """

    def __init__(
        self, per_row: PerRowTopKDistribution | PerRowBernoulliDistribution, entropy_rows: int | None = None
    ) -> None:
        super().__init__()
        if entropy_rows is not None and (not isinstance(entropy_rows, int) or entropy_rows < 1):
            raise ValueError(f"entropy_rows must be None or an integer >= 1, got {entropy_rows!r}")
        self.per_row = per_row
        self.entropy_rows = entropy_rows
        self.layout: RowLayout | None = None

    def proba_distribution_net(self) -> nn.Module:
        """Logits come from :class:`EdgeScorer`."""
        return nn.Identity()

    def proba_distribution(self, edge_logits: th.Tensor, layout: RowLayout) -> EdgeSelectionDistribution:
        self.layout = layout
        self.per_row.proba_distribution(layout.to_rows(edge_logits), layout.mask)
        return self

    def _layout(self) -> RowLayout:
        if self.layout is None:
            raise RuntimeError("call proba_distribution(edge_logits, layout) first")
        return self.layout

    @property
    def row_weight(self) -> th.Tensor:
        return self._layout().mask.any(dim=-1)  # (B, R)

    def log_prob_per_row(self, actions: th.Tensor) -> th.Tensor:
        return self.per_row.log_prob_per_row(self._layout().to_rows(actions.float()) > 0.5)  # (B, R)

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        return self.log_prob_per_row(actions).sum(dim=-1)  # (B,)

    def entropy_per_row(self) -> th.Tensor:
        """Exact entropy of every row, (B, R)."""
        return self.per_row.entropy_per_row()  # (B, R)

    def mean_row_entropy(self) -> th.Tensor:
        """Mean entropy over rows with candidates, (B,): exact, or estimated on ``entropy_rows`` rows."""
        valid = self.row_weight  # (B, R)
        n_valid = valid.sum(dim=-1).clamp(min=1).to(th.float32)  # (B,)
        n_rows = valid.shape[-1]
        if self.entropy_rows is None or self.entropy_rows >= n_rows:
            return self.entropy_per_row().sum(dim=-1) / n_valid  # (B,)
        scores = th.rand(valid.shape, device=valid.device)  # (B, R)
        rows = scores.topk(self.entropy_rows, dim=-1).indices  # (B, n): uniform without replacement
        sampled = self.per_row.entropy_per_row(rows)  # (B, n); rows without candidates give 0
        return sampled.sum(dim=-1) * (n_rows / self.entropy_rows) / n_valid  # (B,)

    def entropy(self) -> th.Tensor:
        """Entropy of the joint (sum over rows), (B,): exact, or estimated on ``entropy_rows`` rows."""
        return self.mean_row_entropy() * self.row_weight.sum(dim=-1)  # (B,)

    def sample(self) -> th.Tensor:
        return self._layout().to_edges(self.per_row.sample())  # (B, E)

    def mode(self) -> th.Tensor:
        return self._layout().to_edges(self.per_row.mode())  # (B, E)

    def actions_from_params(self, edge_logits: th.Tensor, layout: RowLayout, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(edge_logits, layout)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, edge_logits: th.Tensor, layout: RowLayout) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(edge_logits, layout)
        return actions, self.log_prob(actions)


class GNNEdgePolicy(ActorCriticPolicy):
    """Actor-critic policy over MultiBinary edge selections of a graph observation.

    Works with SB3's PPO/A2C (``policy=GNNEdgePolicy``) and with :class:`agents.reinforce.Reinforce`.
    It overrides every method through which SB3 reaches a distribution (``_build``,
    ``forward``, ``evaluate_actions``, ``get_distribution``, ``_predict``,
    ``predict_values``, ``predict``, ``obs_to_tensor``), so PPO's log-probabilities
    and entropy are those of :class:`EdgeSelectionDistribution`.

    Args (``policy_kwargs``):
        k: edges per row for ``distribution="topk"`` (the same in training and in
            deterministic evaluation: ``mode`` takes the k largest logits per row).
        distribution: :class:`SelectionDistribution` value.
        backbone, hidden_dim, n_layers, heads: of the :class:`EdgeScorer`.
        temperature: logits are divided by it before the distribution (> 0); REINFORCE
            schedules it, PPO keeps 1.
        entropy_samples: Monte Carlo samples when the exact top-k entropy is infeasible.
        entropy_rows: rows per graph on which the exact per-row entropy is evaluated for
            ``entropy()`` (an unbiased estimate; None = every row). See
            :class:`EdgeSelectionDistribution`.
        edge_linear_init: initial weights of the scorer's linear edge path (one per edge
            feature; None = zeros). See :class:`EdgeScorer`.
        edge_linear_bias: initial bias of that path (None: the path has no bias).
        optimizer_class, optimizer_kwargs: as in SB3.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.MultiBinary,
        lr_schedule: Schedule,
        k: int = 4,
        distribution: SelectionDistribution | str = SelectionDistribution.TOPK,
        backbone: Backbone | str = Backbone.SAGE,
        hidden_dim: int = 16,
        n_layers: int = 2,
        heads: int = 2,
        temperature: float = 1.0,
        entropy_samples: int = 16,
        entropy_rows: int | None = 64,
        edge_linear_init: list[float] | None = None,
        edge_linear_bias: float | None = None,
        use_sde: bool = False,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not _valid_keys(set(observation_space.spaces) if isinstance(observation_space, spaces.Dict) else None):
            raise ValueError(
                f"GNNEdgePolicy needs a Dict observation space with keys {OBSERVATION_KEYS} (and optionally "
                f"{PADDED_GRAPH_KEY!r}, {CANDIDATE_FEATURES_KEY!r}), got {observation_space}"
            )
        n_edges = observation_space["edge_index"].shape[-1]
        if not isinstance(action_space, spaces.MultiBinary) or action_space.shape != (n_edges,):
            raise ValueError(f"GNNEdgePolicy needs action space MultiBinary({n_edges}) (one bit per edge), got {action_space}")
        if use_sde:
            raise ValueError("use_sde=True is not supported: the edge selection is discrete")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (edges per row) must be an integer >= 1, got {k!r}")
        distribution = parse_choice(SelectionDistribution, distribution, "distribution")
        backbone = parse_choice(Backbone, backbone, "backbone")
        BasePolicy.__init__(
            self, observation_space, action_space, optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs or {}
        )
        self.k, self.distribution = k, distribution
        self.backbone, self.hidden_dim, self.n_layers, self.heads = backbone, hidden_dim, n_layers, heads
        self.entropy_samples, self.entropy_rows = entropy_samples, entropy_rows
        self.edge_linear_init = None if edge_linear_init is None else [float(w) for w in edge_linear_init]
        self.edge_linear_bias = None if edge_linear_bias is None else float(edge_linear_bias)
        self.temperature = temperature
        self.use_sde, self.share_features_extractor, self.dist_kwargs = False, True, None
        per_row = (
            PerRowTopKDistribution(k, entropy_samples=entropy_samples)
            if distribution is SelectionDistribution.TOPK
            else PerRowBernoulliDistribution()
        )
        self.action_dist = EdgeSelectionDistribution(per_row, entropy_rows=entropy_rows)
        self._build(lr_schedule)

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not (isinstance(value, (int, float)) and 0.0 < value < float("inf")):
            raise ValueError(f"temperature must be a finite number > 0, got {value!r}")
        self._temperature = float(value)

    def _build(self, lr_schedule: Schedule) -> None:
        node_dim = self.observation_space["node_features"].shape[-1]
        edge_dim = self.observation_space["edge_features"].shape[-1]
        self.scorer = EdgeScorer(node_dim, edge_dim, self.hidden_dim, self.n_layers, self.backbone, self.heads,
                                 edge_linear_init=self.edge_linear_init, edge_linear_bias=self.edge_linear_bias)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = BasePolicy._get_constructor_parameters(self)
        data.update(
            lr_schedule=self._dummy_schedule, k=self.k, distribution=self.distribution.value,
            backbone=self.backbone.value, hidden_dim=self.hidden_dim, n_layers=self.n_layers, heads=self.heads,
            temperature=self.temperature, entropy_samples=self.entropy_samples, entropy_rows=self.entropy_rows,
            edge_linear_init=self.edge_linear_init, edge_linear_bias=self.edge_linear_bias,
            optimizer_class=self.optimizer_class, optimizer_kwargs=self.optimizer_kwargs,
        )
        return data

    def _evaluate(self, obs: PyTorchObs) -> tuple[EdgeSelectionDistribution, th.Tensor]:
        """The action distribution and values (B, 1) for a batch of Dict observations."""
        graph_size = obs.get(PADDED_GRAPH_KEY)
        graph = batch_graphs(obs["node_features"].float(), obs["edge_index"], obs["edge_features"].float(), graph_size)
        logits, values = self.scorer(graph)  # (B, E), (B,)
        edge_valid = None if graph.edge_valid is None else graph.edge_valid.view(graph.n_graphs, graph.n_edges)  # (B, E)
        layout = row_layout(obs["edge_index"], graph.n_nodes, edge_valid)
        distribution = self.action_dist.proba_distribution(logits / self.temperature, layout)
        return distribution, values.unsqueeze(-1)  # (B, 1)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        raise NotImplementedError("GNNEdgePolicy builds its distribution from the graph: use get_distribution(obs)")

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Actions (B, E), values (B, 1), log-probabilities (B,)."""
        distribution, values = self._evaluate(obs)
        actions = distribution.get_actions(deterministic=deterministic)  # (B, E)
        return actions, values, distribution.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Values (B, 1), log-probabilities (B,) and entropies (B,) of stored actions (B, E)."""
        distribution, values = self._evaluate(obs)
        return values, distribution.log_prob(actions), distribution.entropy()

    def evaluate_actions_per_row(
        self, obs: PyTorchObs, actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Values (B, 1), per-row log-probabilities (B, R), rows with candidates (B, R) bool and
        the mean per-row entropy (B,) of stored actions (B, E): what :class:`agents.row_ppo.RowPPO` needs."""
        distribution, values = self._evaluate(obs)
        return values, distribution.log_prob_per_row(actions), distribution.row_weight, distribution.mean_row_entropy()

    def get_distribution(self, obs: PyTorchObs) -> EdgeSelectionDistribution:
        return self._evaluate(obs)[0]

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        return self._evaluate(obs)[1]

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)

    def obs_to_tensor(self, observation: dict[str, np.ndarray]) -> tuple[PyTorchObs, bool]:  # type: ignore[override]
        """Dict of arrays (single or batched, any graph size) -> dict of tensors with a batch dim."""
        keys = set(observation) if isinstance(observation, dict) else None
        if not _valid_keys(keys):
            got = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
            raise ValueError(f"observation must be a dict with keys {OBSERVATION_KEYS} (and optionally "
                             f"{PADDED_GRAPH_KEY!r}, {CANDIDATE_FEATURES_KEY!r}), got {got}")
        vectorized = np.asarray(observation["node_features"]).ndim == 3
        tensors = {}
        for key in sorted(keys):
            array = np.asarray(observation[key])
            tensors[key] = th.as_tensor(array if vectorized else array[None], device=self.device)
        return tensors, vectorized

    def predict(
        self,
        observation: dict[str, np.ndarray],  # type: ignore[override]
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict`` without the fixed-shape check: any grid size. Actions int8 (E,) or (B, E)."""
        self.set_training_mode(False)
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        with th.no_grad():
            actions = self._predict(obs_tensor, deterministic=deterministic)
        actions = actions.cpu().numpy().astype(np.int8)  # (B, E)
        return (actions if vectorized else actions[0]), state
