"""Training: ``python -m train ALGO --env ID`` (see :mod:`train.cli`)."""
