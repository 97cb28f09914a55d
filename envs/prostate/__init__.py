"""Prostate-v0: attention points for a SAM decoder on micro-ultrasound biopsy cores.

Modules: ``data`` (the ProstNFound cohort format), ``synthetic`` (the default phantom
cohort), ``backbone`` (SAM image encoder and feature cache), ``decoder`` (the reward
model and its pre-training), ``env`` (:class:`~envs.prostate.env.ProstateEnv`).
Nothing is imported here, so registering the id stays cheap.
"""
