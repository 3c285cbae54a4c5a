"""The DDIM diffusion generator type (the registry lists it under "ddim")."""

from apps.ml.ddim.generator_type import DDIM

__all__ = ["DDIM"]
