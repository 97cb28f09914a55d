"""AnisotropicAMG-v0: learn strength-of-connection edges for PyAMG on anisotropic diffusion."""

from envs.amg.env import DEFAULT_EDGES_PER_ROW, AnisotropicAMGEnv

__all__ = ["AnisotropicAMGEnv", "DEFAULT_EDGES_PER_ROW"]
