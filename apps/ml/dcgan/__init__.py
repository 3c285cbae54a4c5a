"""The DCGAN generator type (the registry lists it under "dcgan")."""

from .generator_type import DCGAN

__all__ = ["DCGAN"]
