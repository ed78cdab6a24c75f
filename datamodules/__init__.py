"""Datamodules: each loads its data, holds it as tensors where it fits, and publishes a DataSpec."""

from datamodules.spec import DataSpec

__all__ = ["DataSpec"]
