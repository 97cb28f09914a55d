"""Taxonomy-v0 and TaxonomyMultitask-v0: hierarchical image classification with abstention.

``tree.py`` (the taxonomy), ``data.py`` (the ``labels.h5`` format), ``synthetic.py``
(the built-in data set), ``env.py`` (the envs). Importing this package is cheap; the
envs are registered by :mod:`envs`.
"""
