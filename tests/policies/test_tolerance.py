"""ToleranceChoicePolicy: one candidate edge set per level (evolution's drop tolerance on AnisotropicAMG-v0)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
import torch as th

from agents.reinforce import policy_gradient_loss
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.solver import solve
from policies.tolerance import CandidateChoiceDistribution, ToleranceChoicePolicy

TOLERANCES = [3.0, 4.0, 8.0]
COLUMNS = [10, 11, 12]  # evolution_strong_eps3 / eps4 / eps8


def _env(family: str = "heterogeneous") -> AnisotropicAMGEnv:
    return AnisotropicAMGEnv(grid_size=16, split="test", mode="multilevel", problem_family=family,
                             evolution_features=True, evolution_tolerances=TOLERANCES)


def _policy(env: AnisotropicAMGEnv, **kwargs) -> ToleranceChoicePolicy:
    kwargs.setdefault("candidate_columns", COLUMNS)
    return ToleranceChoicePolicy(env.observation_space, env.action_space, lambda _: 0.05, **kwargs)


@pytest.mark.parametrize("choice", [0, 2])
def test_a_warm_start_at_one_tolerance_is_pyamgs_evolution_with_it_on_every_level(choice: int) -> None:
    env = _env()
    policy = _policy(env, initial_choice=choice, initial_margin=5.0)
    assert env.edge_feature_names[COLUMNS[choice]] == f"evolution_strong_eps{TOLERANCES[choice]:g}"
    for case in (0, 1):
        obs, _ = env.reset(seed=case, options={"case": case})
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(policy.predict(obs, deterministic=True)[0])
        reference = solve(env.problems[case].matrix(), ("evolution", {"epsilon": TOLERANCES[choice]}), env.rhs(case))
        assert info["work"] == pytest.approx(reference.work, rel=1e-12)


def test_log_prob_sums_coinciding_candidates_and_rejects_other_actions() -> None:
    candidates = th.tensor([[[1, 0, 1], [1, 0, 1], [0, 1, 1]]], dtype=th.bool)  # (1, K=3, E=3): candidates 0 and 1 coincide
    logits = th.tensor([[0.0, 1.0, 2.0]])
    distribution = CandidateChoiceDistribution().proba_distribution(logits, candidates)
    p = th.softmax(logits, dim=-1)[0]
    assert distribution.log_prob(th.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(float(th.log(p[0] + p[1])))
    assert distribution.log_prob(th.tensor([[0.0, 1.0, 1.0]])).item() == pytest.approx(float(th.log(p[2])))
    np.testing.assert_array_equal(distribution.mode().numpy(), [[0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="none of the candidate"):
        distribution.log_prob(th.tensor([[1.0, 1.0, 1.0]]))


def test_a_positive_advantage_raises_the_chosen_tolerances_probability() -> None:
    env = _env()
    policy = _policy(env)  # uniform start
    obs_tensor, _ = policy.obs_to_tensor(env.reset(seed=0, options={"case": 0})[0])
    distribution = policy.get_distribution(obs_tensor)
    before, candidates = distribution.distribution.probs[0].detach(), distribution.candidates[0]  # (K,), (K, E)
    distinct = [k for k in range(len(COLUMNS)) if all(not th.equal(candidates[k], candidates[j]) for j in range(len(COLUMNS)) if j != k)]
    assert distinct, "the tolerances should give different C's on this case"
    target = distinct[0]
    action = candidates[None, target].float()  # (1, E)
    for _ in range(5):
        policy.optimizer.zero_grad()
        loss, _, _ = policy_gradient_loss(policy.get_distribution(obs_tensor), action, th.ones(1), entropy_coef=0.0)
        loss.backward()
        policy.optimizer.step()
    after = policy.get_distribution(obs_tensor).distribution.probs[0].detach()
    assert after[target] > before[target] + 0.1, (before, after)


def test_candidate_features_start_silent_and_their_weight_picks_by_aggregation_quality() -> None:
    env = _env()
    policy = _policy(env)  # uniform start
    assert policy.candidate_linear is not None and not policy.candidate_linear.weight.any()
    obs, _ = env.reset(seed=0, options={"case": 0})
    th.testing.assert_close(policy.choice_probabilities(obs), th.full((len(COLUMNS),), 1.0 / len(COLUMNS)))
    with th.no_grad():
        policy.candidate_linear.weight.copy_(th.tensor([[-10.0, 0.0]]))  # prefer the smallest weak-approximation measure
    probabilities = policy.choice_probabilities(obs)
    assert int(probabilities.argmax()) == int(np.argmin(obs["candidate_features"][:, 0])) and probabilities.max() > 0.6
    # the edge policy reads the same observations and ignores the key
    from policies.gnn import GNNEdgePolicy

    edge_policy = GNNEdgePolicy(env.observation_space, env.action_space, lambda _: 0.05)
    assert edge_policy.predict(obs, deterministic=True)[0].shape == env.action_space.shape


def test_a_warm_start_at_the_supervised_scorer_chooses_as_the_scorer() -> None:
    from agents.baselines.amg_tolerance_scorer import AMGToleranceScorerAgent, warm_start_kwargs

    env = _env()
    weights, biases = [0.4, -0.3], [0.02, 0.0, -0.015]
    policy = _policy(env, **warm_start_kwargs({"weights": weights, "biases": biases}))  # default candidate_feature_scale 10
    scorer = AMGToleranceScorerAgent(weights, biases)
    for case in range(4):
        obs, _ = env.reset(seed=case, options={"case": case})
        assert int(policy.choice_probabilities(obs).argmax()) == scorer.choice(obs)


def test_bad_arguments_are_named() -> None:
    env = _env()
    with pytest.raises(ValueError, match="candidate_columns"):
        _policy(env, candidate_columns=[10, 99])
    without_features = spaces.Dict({k: v for k, v in env.observation_space.spaces.items() if k != "candidate_features"})
    with pytest.raises(ValueError, match="candidate_columns .*required when the observation has no candidate_features"):
        ToleranceChoicePolicy(without_features, env.action_space, lambda _: 0.05)
    # with candidate_features, the columns they describe are the default (the training ymls give none)
    assert ToleranceChoicePolicy(env.observation_space, env.action_space, lambda _: 0.05).candidate_columns == COLUMNS
    with pytest.raises(ValueError, match="initial_choice"):
        _policy(env, initial_choice=3)
    with pytest.raises(ValueError, match="initial_logits"):
        _policy(env, initial_logits=[0.0, 1.0])  # 3 candidates
    with pytest.raises(ValueError, match="candidate_linear_init"):
        _policy(env, candidate_linear_init=[0.0, float("nan")])
    with pytest.raises(ValueError, match="candidate_feature_scale"):
        _policy(env, candidate_feature_scale=0.0)
    with pytest.raises(ValueError, match="candidate_features"):
        _policy(env, candidate_columns=COLUMNS[:2])  # 2 columns, 3 described candidates
    with pytest.raises(ValueError, match="candidate_features"):
        _policy(env, candidate_columns=COLUMNS[::-1])  # the features' rows would not match the columns
    with pytest.raises(ValueError, match="evolution_tolerances"):
        AnisotropicAMGEnv(evolution_features=True, evolution_tolerances=[0.5])
    with pytest.raises(ValueError, match="evolution_features"):
        AnisotropicAMGEnv(evolution_tolerances=[4.0])


@pytest.mark.parametrize("algo", ["ppo", "row-ppo", "reinforce"])
def test_trains_with_every_amg_algorithm_and_round_trips(algo: str, tmp_path) -> None:
    """The learners a user would point at AnisotropicAMG-v0 run with this policy, and a saved
    model acts exactly as the trained one."""
    from stable_baselines3 import PPO

    from agents.reinforce import Reinforce
    from agents.row_ppo import RowPPO

    env = AnisotropicAMGEnv(grid_size=8, mode="multilevel", problem_family="heterogeneous",
                            evolution_features=True, evolution_tolerances=TOLERANCES)
    policy_kwargs = {"candidate_columns": COLUMNS, "initial_choice": 1}
    if algo == "reinforce":
        model = Reinforce(ToleranceChoicePolicy, env, learning_rate=0.01, episodes_per_update=4, group_size=2,
                          policy_kwargs=policy_kwargs, seed=0)
    else:
        cls = PPO if algo == "ppo" else RowPPO
        model = cls(ToleranceChoicePolicy, env, n_steps=8, batch_size=8, n_epochs=1, policy_kwargs=policy_kwargs, seed=0)
    before = [p.detach().clone() for p in model.policy.choice_head.parameters()]
    model.learn(16)
    assert any(not th.equal(a, b.detach()) for a, b in zip(before, model.policy.choice_head.parameters()))
    model.save(tmp_path / "m.zip")
    loaded = type(model).load(tmp_path / "m.zip", device="cpu")
    assert loaded.policy.candidate_columns == COLUMNS and loaded.policy.initial_choice == 1
    obs, _ = env.reset(seed=3)
    th.testing.assert_close(loaded.policy.choice_probabilities(obs), model.policy.choice_probabilities(obs))
