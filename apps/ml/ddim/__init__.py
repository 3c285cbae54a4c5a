"""DDIM diffusion generator type; importing this package registers it."""
from .generator_type import DDIM

__all__ = ["DDIM"]
