"""Prostate-v0: attention points for a SAM decoder on micro-ultrasound biopsy cores.

Modules: ``data`` (the ProstNFound cohort format), ``synthetic`` (the default phantom
cohort), ``backbone`` (the SAM image encoder), ``feature_cache`` (its features, encoded
once per cohort), ``encoded_cohort`` (cohort + encoder + features, as the env and
pre-training both choose them), ``reward_model`` (the SAM decoder that scores the
points, and its checkpoints), ``reward_training`` (its pre-training), ``metrics``
(core-level evaluation numbers), ``env`` (:class:`~envs.prostate.env.ProstateEnv`).
Nothing is imported here, so registering the id stays cheap.
"""
