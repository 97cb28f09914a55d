"""Hydrogel-v0 / HydrogelSearch-v0: contracts, surrogate properties, vector agreement."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401
from collections import Counter

from envs.hydrogel.cohort import REAL_PATIENTS, REAL_TEST_IDS, make_cohort, synthetic_patients, validate_patients
from envs.hydrogel.library import FORMULATION_HIGH, FORMULATION_LOW, POLYMERS, Category, Coverage, polymer_table
from envs.hydrogel.oracle import DesignOracle
from envs.hydrogel.problem import DesignProblem
from envs.hydrogel.outcome import assess_designs
from envs.hydrogel.surrogate import PREDICTION_NAMES, SurrogateOutcomeModel
from envs.hydrogel.vector import HydrogelBatch, HydrogelVectorEnv
from envs.hydrogel.wrappers import HybridBoxAction
from rewards.hydrogel import RewardWeights

SMALL = dict(n_synthetic=20)


def _design(polymer: str, stiffness: float, half_life: float, conductivity: float, thickness: float, coverage: int):
    return {
        "polymer": np.int64([p.name for p in POLYMERS].index(polymer)),
        "formulation": np.array([stiffness, half_life, conductivity, thickness], dtype=np.float32),
        "coverage": np.int64(coverage),
    }


def _predict(patient: np.ndarray, polymer: int, formulation, coverage: int) -> dict[str, float]:
    out = SurrogateOutcomeModel()(
        torch.as_tensor(patient, dtype=torch.float32)[None],
        torch.tensor([polymer]),
        torch.tensor([formulation], dtype=torch.float32),
        torch.tensor([coverage]),
    )
    return {k: float(v[0]) for k, v in out.items()}


# ---------------------------------------------------------------- env contracts
@pytest.mark.parametrize("env_id", ["Hydrogel-v0", "HydrogelSearch-v0"])
def test_gymnasium_check_env(env_id: str) -> None:
    env = gym.make(env_id, **SMALL)
    gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ["Hydrogel-v0", "HydrogelSearch-v0"])
def test_sb3_check_env_on_box_form(env_id: str) -> None:
    sb3_check_env(HybridBoxAction(gym.make(env_id, **SMALL)), warn=True)


def test_make_with_module_prefix_needs_no_import() -> None:
    env = gym.make("envs:Hydrogel-v0", **SMALL)
    assert env.observation_space.shape == (13,)


@pytest.mark.parametrize("env_id", ["Hydrogel-v0", "HydrogelSearch-v0"])
def test_same_seed_same_episode(env_id: str) -> None:
    def rollout(seed: int) -> list:
        env = gym.make(env_id, noise_std=0.1, **SMALL)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            trace += [obs, reward, info["delta_EF"], info["patient_id"]]
            done = terminated or truncated
        return trace

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_reset_case_replays_the_patient() -> None:
    env = gym.make("Hydrogel-v0", split="test", **SMALL)
    cohort = env.unwrapped.cohort
    for case in range(len(cohort)):
        _, info = env.reset(seed=case, options={"case": case})
        assert info["patient_id"] == cohort.ids[case]
    with pytest.raises(ValueError, match="case"):
        env.reset(options={"case": len(cohort)})


def test_out_of_space_actions_raise_naming_the_field() -> None:
    env = gym.make("Hydrogel-v0", **SMALL)
    env.reset(seed=0)
    good = _design("HA_ECM", 10.0, 60.0, 0.0, 3.0, 2)
    with pytest.raises(ValueError, match="polymer"):
        env.step({**good, "polymer": np.int64(24)})
    with pytest.raises(ValueError, match="coverage"):
        env.step({**good, "coverage": np.int64(-1)})
    with pytest.raises(ValueError, match=r"formulation.*\(thickness\)"):
        env.step({**good, "formulation": np.array([10.0, 60.0, 0.0, 9.0], dtype=np.float32)})
    with pytest.raises(ValueError, match="formulation"):
        env.step({**good, "formulation": np.array([np.nan, 60.0, 0.0, 3.0], dtype=np.float32)})
    with pytest.raises(ValueError, match="lacks"):
        env.step({"polymer": np.int64(0)})


def test_infeasible_formulation_is_clipped_and_reported() -> None:
    env = gym.make("Hydrogel-v0", **SMALL)
    env.reset(seed=0)
    # HA_acellular: stiffness window 0.5-10 kPa, half-life 7-45 days, not conductive.
    _, _, _, _, info = env.step(_design("HA_acellular", 50.0, 100.0, 0.8, 3.0, 1))
    assert info["clipped"]
    np.testing.assert_allclose(info["formulation_used"], [10.0, 45.0, 0.0, 3.0])
    np.testing.assert_allclose(info["formulation_requested"], [50.0, 100.0, 0.8, 3.0])
    _, _, _, _, info = env.step(_design("HA_acellular", 5.0, 30.0, 0.0, 3.0, 1))
    assert not info["clipped"]


def test_info_carries_predictions_components_and_yardsticks() -> None:
    env = gym.make("Hydrogel-v0", **SMALL)
    env.reset(seed=1)
    _, reward, terminated, truncated, info = env.step(_design("dECM_cardiac", 19.0, 75.0, 0.0, 4.0, 2))
    assert terminated and not truncated
    for key in (*PREDICTION_NAMES, "is_optimal", "therapeutic", "regret", "best_achievable", "design_score"):
        assert key in info
    assert info["is_optimal"] == (info["delta_EF"] >= 3 and info["stress_reduction"] >= 15)
    assert np.isfinite(reward)
    assert info["regret"] == pytest.approx((info["best_achievable"] - info["design_score"]) / abs(info["best_achievable"]))


def test_search_env_return_is_best_score_plus_novelty() -> None:
    env = gym.make("HydrogelSearch-v0", horizon=4, **SMALL)
    env.reset(seed=0)
    designs = [
        _design("GelMA_3pct", 2.0, 10.0, 0.0, 1.0, 0),
        _design("dECM_cardiac", 19.0, 75.0, 0.0, 4.0, 2),
        _design("GelMA_3pct", 2.0, 10.0, 0.0, 1.0, 0),
        _design("HA_ECM", 15.0, 70.0, 0.0, 4.0, 2),
    ]
    total, scores, novel_bonuses = 0.0, [], []
    for step, design in enumerate(designs):
        obs, reward, terminated, _, info = env.step(design)
        total += reward
        scores.append(info["design_score"])
        novel_bonuses.append(info["novelty_bonus"])
        assert obs[12] == pytest.approx((step + 1) / 4)
        assert obs[11] == pytest.approx(max(scores) / 10, rel=1e-5)
        assert terminated == (step == 3)
    assert novel_bonuses == pytest.approx([0.1, 0.1, 0.0, 0.1])
    assert total == pytest.approx(max(scores) + 0.3, rel=1e-5)


# ---------------------------------------------------------------- surrogate
def test_border_zone_coverage_helps_when_area_allows() -> None:
    patient = REAL_PATIENTS[7]  # scar 7 % + BZ 15 %: full coverage stays under the 25 % limit
    polymer = [p.name for p in POLYMERS].index("HA_ECM")
    dEF = [_predict(patient, polymer, [15.0, 70.0, 0.0, 4.0], c)["delta_EF"] for c in Coverage]
    assert dEF == sorted(dEF) and dEF[-1] > dEF[0] * 1.3


def test_conductivity_matters_only_for_conductive_polymers() -> None:
    patient = synthetic_patients(50, seed=1)[np.argmax(synthetic_patients(50, seed=1)[:, 8])]
    env = gym.make("Hydrogel-v0", **SMALL)
    env.reset(seed=0)
    for name, expect_change in (("HA_ECM", False), ("GelMA_Polypyrrole", True)):
        low = _design(name, 15.0, 60.0, 0.0, 4.0, 3)
        high = _design(name, 15.0, 60.0, 0.9, 4.0, 3)
        table = polymer_table()
        preds = [
            assess_designs(
                torch.as_tensor(patient, dtype=torch.float32)[None], torch.tensor([int(d["polymer"])]),
                torch.as_tensor(d["formulation"])[None], torch.tensor([3]), torch.tensor([True]),
                model=SurrogateOutcomeModel(), window_low=table["low"], window_high=table["high"],
            ).predictions
            for d in (low, high)
        ]
        changed = any(not torch.equal(preds[0][k], preds[1][k]) for k in PREDICTION_NAMES)
        assert changed == expect_change, name


def _patient(lvef=35.0, gls=-17.0, edv=220.0, scar=9.0, bz=19.0, conc=2.2, trans=0.45, wall=18.0) -> np.ndarray:
    """A consistent patient: ESV from EDV and LVEF, healthy stress 8 kPa."""
    return np.array([lvef, gls, edv, edv * (1 - lvef / 100), scar, bz, 8 * conc, 8.0, conc, trans, wall])


_ARCHETYPES = {
    "small_non_transmural": _patient(lvef=45, gls=-19, scar=4, trans=0.22, conc=1.6, bz=12),
    "large_transmural": _patient(lvef=25, gls=-13, edv=400, scar=30, trans=0.95, conc=3.0, bz=14),
    "arrhythmic": _patient(scar=14, conc=3.6, bz=28, trans=0.55),
    "quiet": _patient(scar=14, conc=2.0, bz=12, trans=0.55),
    "thin_wall": _patient(wall=7),
    "thick_wall": _patient(wall=26),
    "small_esv": _patient(edv=90),
    "large_esv": _patient(edv=550),
}


@pytest.fixture(scope="module")
def archetype_optima() -> dict:
    oracle = DesignOracle(SurrogateOutcomeModel(), RewardWeights())
    bests = oracle.precompute(validate_patients(np.stack(list(_ARCHETYPES.values()))))
    return dict(zip(_ARCHETYPES, bests, strict=True))


def _best_of(design, categories) -> float:
    return max(design.polymer_scores[i] for i, p in enumerate(POLYMERS) if p.category in categories)


_NATURAL = {Category.DECELLULARIZED, Category.GLYCOSAMINOGLYCAN, Category.PROTEIN, Category.POLYSACCHARIDE}


def test_conductive_gels_win_only_with_an_arrhythmic_substrate(archetype_optima) -> None:
    conductive = {Category.CONDUCTIVE, Category.CONDUCTIVE_HYDROGEL}
    others = set(Category) - conductive
    arrhythmic, quiet = archetype_optima["arrhythmic"], archetype_optima["quiet"]
    assert POLYMERS[arrhythmic.polymer].is_conductive and arrhythmic.formulation[2] >= 0.4
    assert _best_of(arrhythmic, conductive) > 1.1 * _best_of(arrhythmic, others)
    assert not POLYMERS[quiet.polymer].is_conductive
    assert _best_of(quiet, others) > 1.1 * _best_of(quiet, conductive)


def test_large_transmural_scars_need_stiff_slow_gels_natural_ones_cannot_reach(archetype_optima) -> None:
    large, small = archetype_optima["large_transmural"], archetype_optima["small_non_transmural"]
    assert POLYMERS[large.polymer].category not in _NATURAL
    assert large.formulation[0] > 40.0 and large.formulation[1] > 120.0  # kPa, days
    assert large.design_score > 1.1 * _best_of(large, _NATURAL)
    # small, non-transmural infarcts: a bioactive natural gel, soft and fast-remodelling
    assert POLYMERS[small.polymer].category in _NATURAL
    assert small.formulation[0] < 8.0 and small.formulation[1] < 60.0
    assert small.design_score > 1.1 * _best_of(small, {Category.SYNTHETIC, Category.CONDUCTIVE})


def test_thin_walls_get_thin_patches_and_dilation_shifts_stiffness(archetype_optima) -> None:
    assert archetype_optima["thin_wall"].formulation[3] < 2.0 < 4.5 < archetype_optima["thick_wall"].formulation[3]
    assert archetype_optima["large_esv"].formulation[0] > 1.4 * archetype_optima["small_esv"].formulation[0]


def test_thick_patch_costs_more_on_a_thin_wall() -> None:
    polymer = [p.name for p in POLYMERS].index("HA_ECM")
    thin, thick = _ARCHETYPES["thin_wall"], _ARCHETYPES["thick_wall"]
    loss_thin = 1 - _predict(thin, polymer, [10.0, 70.0, 0.0, 5.0], 2)["delta_EF"] / _predict(thin, polymer, [10.0, 70.0, 0.0, 1.4], 2)["delta_EF"]
    loss_thick = 1 - _predict(thick, polymer, [10.0, 70.0, 0.0, 5.0], 2)["delta_EF"] / _predict(thick, polymer, [10.0, 70.0, 0.0, 1.4], 2)["delta_EF"]
    assert loss_thin > 0.5 and loss_thick < 0.0


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> DesignProblem:
    """The default cohort's 43 test patients, with the oracle (cached in a private dir)."""
    return DesignProblem(split="test", cache_dir=tmp_path_factory.mktemp("oracle"))


def _regret(best: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return (best - scores) / np.abs(best)


def test_oracle_best_polymer_depends_on_the_patient(test_split: DesignProblem) -> None:
    """The issue's oracle statistics, on the default test patients (README figures)."""
    counts = Counter(b.polymer for b in test_split.optimal_designs)
    assert len(counts) >= 6, counts
    assert max(counts.values()) <= 0.35 * len(test_split), counts
    real = [test_split.optimal_designs[test_split.cohort.ids.index(i)].polymer for i in REAL_TEST_IDS]
    assert len(set(real)) > 1, real
    everyone = DesignProblem(split="train", cache_dir=test_split.cache_dir).optimal_designs
    assert len({b.polymer for b in everyone}) >= 6


def test_patient_blind_designs_and_a_single_polymer_leave_regret(test_split: DesignProblem) -> None:
    best = np.array([b.design_score for b in test_split.optimal_designs])  # (P,)
    grid = test_split.oracle.grid_scores(test_split.cohort.features).numpy()  # (P, G)
    assert _regret(best[:, None], grid).mean(0).min() >= 0.25  # best constant design
    per_polymer = np.array([b.polymer_scores for b in test_split.optimal_designs])  # (P, 24)
    assert _regret(best[:, None], per_polymer).mean(0).min() >= 0.08  # population-best polymer
    assert np.all(per_polymer.max(1) == pytest.approx(best))


def test_toxicity_is_one_minus_biocompatibility() -> None:
    for index, polymer in enumerate(POLYMERS):
        out = _predict(REAL_PATIENTS[0], index, [10.0, 60.0, 0.0, 3.0], 1)
        assert out["toxicity"] == pytest.approx(1 - polymer.biocompatibility, abs=1e-6)


def test_optimal_designs_differ_between_patients() -> None:
    oracle = DesignOracle(SurrogateOutcomeModel(), RewardWeights())
    patients = np.concatenate([REAL_PATIENTS[[0, 7]], synthetic_patients(30, seed=0)[:6]])
    bests = oracle.precompute(patients)
    designs = {(b.polymer, b.coverage) for b in bests}
    assert len(designs) >= 3, designs


def test_oracle_beats_random_designs_and_sits_inside_windows() -> None:
    model, weights = SurrogateOutcomeModel(), RewardWeights()
    best = DesignOracle(model, weights).best(REAL_PATIENTS[2])
    table = polymer_table()
    low, high = table["low"][best.polymer].numpy(), table["high"][best.polymer].numpy()
    assert np.all(np.array(best.formulation) >= low - 1e-4) and np.all(np.array(best.formulation) <= high + 1e-4)
    rng = np.random.default_rng(0)
    n = 4096
    scores = assess_designs(
        torch.as_tensor(REAL_PATIENTS[2], dtype=torch.float32).expand(n, -1),
        torch.as_tensor(rng.integers(24, size=n)),
        torch.as_tensor(rng.uniform(FORMULATION_LOW, FORMULATION_HIGH, (n, 4)), dtype=torch.float32),
        torch.as_tensor(rng.integers(4, size=n)),
        torch.zeros(n, dtype=torch.bool),
        model=model, window_low=table["low"], window_high=table["high"], weights=weights,
    ).design_score
    assert best.design_score >= float(scores.max())


def test_random_designs_are_rarely_optimal() -> None:
    env = gym.make("Hydrogel-v0", split="test", **SMALL)
    env.action_space.seed(0)
    hits = []
    for i in range(400):
        env.reset(seed=i)
        hits.append(env.step(env.action_space.sample())[4]["is_optimal"])
    assert np.mean(hits) < 0.3


def test_user_outcome_model_replaces_surrogate_and_is_validated(tmp_path) -> None:
    class Constant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = list(PREDICTION_NAMES)

        def forward(
            self, patients: torch.Tensor, polymer: torch.Tensor, formulation: torch.Tensor, coverage: torch.Tensor
        ) -> dict[str, torch.Tensor]:
            out: dict[str, torch.Tensor] = {}
            for name in self.names:
                out[name] = torch.full((patients.shape[0],), 0.5)
            return out

    env = gym.make("Hydrogel-v0", outcome_model=Constant(), compute_regret=False, **SMALL)
    env.reset(seed=0)
    info = env.step(_design("HA_ECM", 10.0, 60.0, 0.0, 3.0, 1))[4]
    assert info["delta_EF"] == 0.5 and "regret" not in info

    path = tmp_path / "stage1.pt"
    torch.jit.script(Constant()).save(str(path))
    env = gym.make("Hydrogel-v0", outcome_model=str(path), compute_regret=False, **SMALL)
    env.reset(seed=0)
    assert env.step(_design("HA_ECM", 10.0, 60.0, 0.0, 3.0, 1))[4]["stress_reduction"] == 0.5

    def broken(patients, polymer, formulation, coverage):
        return {name: torch.full((patients.shape[0],), float("nan")) for name in PREDICTION_NAMES}

    env = gym.make("Hydrogel-v0", outcome_model=broken, compute_regret=False, **SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        env.step(_design("HA_ECM", 10.0, 60.0, 0.0, 3.0, 1))
    with pytest.raises(FileNotFoundError, match="outcome_model"):
        gym.make("Hydrogel-v0", outcome_model=str(tmp_path / "missing.pt"), **SMALL)


# ---------------------------------------------------------------- cohort
def test_cohort_splits_are_disjoint_and_real_test_patients_held_out() -> None:
    splits = {s: set(make_cohort("augmented", s, n_synthetic=50).ids) for s in ("train", "val", "test")}
    assert not splits["train"] & splits["test"] and not splits["train"] & splits["val"]
    assert {"SCD0000301", "SCD0000801", "SCD0001201"} <= splits["test"]


def test_synthetic_cohort_is_seeded_and_consistent_with_real_one() -> None:
    a, b = synthetic_patients(100, seed=3), synthetic_patients(100, seed=3)
    np.testing.assert_array_equal(a, b)
    ef_from_volumes = 100 * (a[:, 2] - a[:, 3]) / a[:, 2]
    assert np.all(np.abs(ef_from_volumes - a[:, 0]) <= 5)
    validate_patients(REAL_PATIENTS)  # the real cohort passes the generator's bounds


def test_invalid_patients_and_options_name_the_field() -> None:
    bad = REAL_PATIENTS.copy()
    bad[0, 0] = 95.0
    with pytest.raises(ValueError, match="LVEF"):
        validate_patients(bad)
    with pytest.raises(ValueError, match="split"):
        gym.make("Hydrogel-v0", split="holdout")
    with pytest.raises(ValueError, match="cohort"):
        gym.make("Hydrogel-v0", cohort="imaginary")
    with pytest.raises(ValueError, match="reward_weights"):
        gym.make("Hydrogel-v0", reward_weights={"delta_ef": 3.0, "bogus": 1.0})


# ---------------------------------------------------------------- vector env
def test_vector_and_single_env_score_designs_identically() -> None:
    batch = HydrogelBatch(16, **SMALL)
    batch.reset(seed=0)
    rng = np.random.default_rng(0)
    polymer = torch.as_tensor(rng.integers(24, size=16))
    formulation = torch.as_tensor(rng.uniform(FORMULATION_LOW, FORMULATION_HIGH, (16, 4)), dtype=torch.float32)
    coverage = torch.as_tensor(rng.integers(4, size=16))
    patients = batch.patient_index.clone()
    _, reward, terminated, _, info = batch.step(polymer, formulation, coverage)
    assert terminated.all()
    env = gym.make("Hydrogel-v0", **SMALL)
    for i in range(16):
        env.reset(options={"case": int(patients[i])})
        action = {"polymer": np.int64(polymer[i]), "formulation": formulation[i].numpy(), "coverage": np.int64(coverage[i])}
        _, r, _, _, single = env.step(action)
        assert r == pytest.approx(float(reward[i]), rel=1e-5, abs=1e-5)
        assert single["regret"] == pytest.approx(float(info["regret"][i]), rel=1e-5, abs=1e-5)


def test_gymnasium_vector_env_autoresets_same_step() -> None:
    venv = gym.make_vec("Hydrogel-v0", num_envs=8, **SMALL)
    assert isinstance(venv.unwrapped, HydrogelVectorEnv)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, 13)
    venv.action_space.seed(0)
    obs2, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert terminated.all() and not truncated.any() and np.isfinite(reward).all()
    assert info["final_obs"].shape == (8, 13) and info["_final_obs"].all()
    np.testing.assert_array_equal(obs2[:, 11], 0.0)  # new episodes: no design yet
    bad = venv.action_space.sample()
    bad["polymer"][0] = 30
    with pytest.raises(ValueError, match="polymer"):
        venv.step(bad)
