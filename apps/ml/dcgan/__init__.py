"""The DCGAN generator type; importing this package registers it under "dcgan"."""
from .generator_type import DCGAN

__all__ = ["DCGAN"]
