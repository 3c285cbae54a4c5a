"""The DCGAN generator type (the registry lists it under "dcgan")."""

from apps.ml.dcgan.generator_type import DCGAN

__all__ = ["DCGAN"]
