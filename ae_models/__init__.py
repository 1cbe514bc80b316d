"""Autoencoders for tabular data: pure PyTorch and NumPy, usable without the pipeline.

``AEConfig``, ``KINDS``, ``LATENT_PREFIX`` and ``LatentMap`` (a backward map between two versions'
latent spaces) import without torch; the estimator loads it when asked for, so readers of the feature
table that only need the names, or a map, stay light.
"""
from typing import Any

from .alignment import LatentMap
from .config import ACTIVATIONS, KINDS, LATENT_PREFIX, AEConfig

__all__ = ["ACTIVATIONS", "AEConfig", "AutoencoderReducer", "FormatError", "KINDS", "LATENT_PREFIX", "LatentMap",
           "NotFittedError"]


def __getattr__(name: str) -> Any:
    if name in ("AutoencoderReducer", "FormatError", "NotFittedError"):
        from . import reducer

        return getattr(reducer, name)
    raise AttributeError(f"module 'ae_models' has no attribute {name!r}")
