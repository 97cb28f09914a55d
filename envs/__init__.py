"""ScienceGym environments. Importing this package registers every env id.

Registration is cheap: every part of an env is named by import string, so no torch
model, data set or solver is built until ``gym.make`` is called.

Each id has one :class:`~envs.spec.EnvEntry` in :data:`ENTRIES`: its entry points, its
SB3-facing forms, its pre-training, how it is evaluated (metrics, test cases) and the
reference agents every score is reported next to. Other layers read :func:`entry`.

>>> import gymnasium as gym, envs
>>> env = gym.make("Hydrogel-v0")
>>> envs.entry("Hydrogel-v0").evaluation.metrics
'envs.hydrogel.metrics:summarise'
"""

from __future__ import annotations

import gymnasium as gym

import envs.cache  # noqa: F401  (registers the after-fork hook that keeps forked workers off torch threads)
from envs.spec import CaseSchedule, EnvEntry, EvalProtocol, ReferenceAgent

__all__ = ["ENTRIES", "ENV_IDS", "entry"]

_RANDOM = ReferenceAgent("random", "agents.baselines.common:random_agent")

_HG = "agents.baselines.hydrogel:"
_HYDROGEL_DESIGN_REFERENCES = (
    _RANDOM,
    ReferenceAgent("best_constant_design", _HG + "best_constant_design_agent"),
    ReferenceAgent("population_best_polymer", _HG + "population_best_polymer_agent"),
    ReferenceAgent("oracle", _HG + "oracle_agent"),
)
_HYDROGEL = dict(
    evaluation=EvalProtocol(metrics="envs.hydrogel.metrics:summarise", default_episodes=43,
                            extras="envs.hydrogel.metrics:cohort_facts", reference="oracle",
                            headline_metrics=("mean_regret", "optimal_rate", "n_distinct_polymers")),
    sb3_wrapper="envs.hydrogel.wrappers:HybridBoxAction",
    sb3_vec_env="envs.hydrogel.sb3_vec:make_sb3_vec_env",
)

_SEQUENTIAL = {"action_mode": "sequential"}

_TAXONOMY = dict(
    evaluation=EvalProtocol(
        metrics="envs.taxonomy.metrics:summarise", schedule=CaseSchedule.SAMPLE,
        extras="agents.baselines.taxonomy:threshold_references",
        plots="envs.taxonomy.plots:plot_risk_coverage", reference="supervised_abstention",
        headline_metrics=("aurc",),
    ),
    reference_agents=(_RANDOM,),
    pretrain="train.pretrain_taxonomy:pretrain",
)

ENTRIES: dict[str, EnvEntry] = {
    e.id: e
    for e in (
        EnvEntry(
            "Hydrogel-v0", "envs.hydrogel.env:HydrogelEnv",
            vector_entry_point="envs.hydrogel.vector:HydrogelVectorEnv",
            summary="one hydrogel design (polymer, formulation, coverage) per post-infarction patient",
            # per-patient black-box optimisers at 10 and 100 outcome-model calls per patient
            reference_agents=(
                *_HYDROGEL_DESIGN_REFERENCES,
                *(ReferenceAgent(f"{m}_{n}", f"{_HG}{m}_{n}_agent") for m in ("random_search", "tpe") for n in (10, 100)),
            ),
            **_HYDROGEL,
        ),
        EnvEntry(
            "HydrogelSearch-v0", "envs.hydrogel.env:HydrogelSearchEnv",
            vector_entry_point="envs.hydrogel.vector:HydrogelSearchVectorEnv",
            summary="`horizon` hydrogel designs per patient; the best one counts",
            # the optimisers' trials are the episode's designs (budget = horizon)
            reference_agents=(
                *_HYDROGEL_DESIGN_REFERENCES,
                ReferenceAgent("random_search", _HG + "random_search_horizon_agent"),
                ReferenceAgent("tpe", _HG + "tpe_horizon_agent"),
            ),
            **_HYDROGEL,
        ),
        EnvEntry(
            "Prostate-v0", "envs.prostate.env:ProstateEnv",
            evaluation=EvalProtocol(
                metrics="envs.prostate.metrics:summarise", schedule=CaseSchedule.PASSES,
                test_kwargs={"split": "test", "relative_reward": False},
                extras="envs.prostate.metrics:cohort_facts", reference="lesion_probe",
                headline_metrics=("core_auroc", "balanced_accuracy", "sensitivity_at_60_specificity"),
            ),
            reference_agents=(
                ReferenceAgent("none", "agents.baselines.prostate:stop_agent",
                               env_kwargs={**_SEQUENTIAL, "min_points": 0}, passes=1),
                ReferenceAgent("random", "agents.baselines.prostate:random_cell_agent",
                               env_kwargs=_SEQUENTIAL, min_passes=3),
                ReferenceAgent("center", "agents.baselines.prostate:center_agent", env_kwargs=_SEQUENTIAL, passes=1),
                ReferenceAgent("needle_path", "agents.baselines.prostate:needle_path_agent",
                               env_kwargs=_SEQUENTIAL, passes=1),
                ReferenceAgent("needle_random", "agents.baselines.prostate:needle_random_agent",
                               env_kwargs=_SEQUENTIAL, min_passes=3),
                ReferenceAgent("hypoechoic", "agents.baselines.prostate:hypoechoic_agent",
                               env_kwargs=_SEQUENTIAL, passes=1),
                ReferenceAgent("lesion_probe", "agents.baselines.prostate:lesion_probe_agent",
                               env_kwargs=_SEQUENTIAL, passes=1),
            ),
            pretrain="train.pretrain_prostate:pretrain",
            summary="attention points on a MedSAM feature grid; a SAM decoder scores the cancer heatmap",
        ),
        EnvEntry(
            "AnisotropicAMG-v0", "envs.amg.env:AnisotropicAMGEnv",
            evaluation=EvalProtocol(
                metrics="envs.amg.metrics:summarise", default_episodes=20, warm_up=True,
                test_kwargs={"split": "test", "report_timings": True},
                extras="agents.baselines.amg:solver_references",
                transfer=("transfer_grid_sizes", "grid_size"), reference="evolution",
                headline_metrics=("mean_work", "mean_pcg_iterations", "mean_operator_complexity"),
            ),
            reference_agents=(
                ReferenceAgent("random", "agents.baselines.amg:random_k_per_row_agent"),
                ReferenceAgent("direction", "agents.baselines.amg:direction_agent", env_kwargs={"mode": "finest"}),
                ReferenceAgent("direction_every_level", "agents.baselines.amg:direction_agent",
                               env_kwargs={"mode": "multilevel"}),
                ReferenceAgent("evolution_threshold", "agents.baselines.amg:evolution_threshold_agent",
                               env_kwargs={"mode": "multilevel", "evolution_features": True}),
                ReferenceAgent("tolerance_scorer", "agents.baselines.amg_tolerance_scorer:tolerance_scorer_agent",
                               env_kwargs={"mode": "multilevel", "evolution_features": True,
                                           "evolution_tolerances": [3.0, 4.0, 5.0, 6.0, 8.0]}),
            ),
            summary="strong edges (strength of connection) for PyAMG smoothed aggregation, on one or every level",
        ),
        EnvEntry(
            "Taxonomy-v0", "envs.taxonomy.env:TaxonomyEnv",
            summary="a taxon rank by rank, or abstain",
            **_TAXONOMY,
        ),
        EnvEntry(
            "TaxonomyMultitask-v0", "envs.taxonomy.env:TaxonomyMultitaskEnv",
            summary="a class or abstention for every rank in one step",
            **_TAXONOMY,
        ),
    )
}

ENV_IDS: tuple[str, ...] = tuple(ENTRIES)


def entry(env_id: str) -> EnvEntry:
    """The row of ``env_id``; the error lists every ScienceGym id."""
    try:
        return ENTRIES[env_id]
    except KeyError:
        raise ValueError(f"{env_id!r} is not a ScienceGym env; choose one of: {', '.join(ENV_IDS)}") from None


for _entry in ENTRIES.values():
    if _entry.id not in gym.registry:
        gym.register(**_entry.gym_kwargs())
