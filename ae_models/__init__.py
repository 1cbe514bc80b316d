"""Autoencoders for tabular data: pure PyTorch and NumPy, usable without the pipeline.

``AEConfig``, ``KINDS`` and ``LATENT_PREFIX`` import without torch; the estimator loads it when asked
for, so readers of the feature table that only need the names stay light.
"""
from typing import Any

from .config import ACTIVATIONS, KINDS, LATENT_PREFIX, AEConfig

__all__ = ["ACTIVATIONS", "AEConfig", "AutoencoderReducer", "FormatError", "KINDS", "LATENT_PREFIX", "NotFittedError"]


def __getattr__(name: str) -> Any:
    if name in ("AutoencoderReducer", "FormatError", "NotFittedError"):
        from . import reducer

        return getattr(reducer, name)
    raise AttributeError(f"module 'ae_models' has no attribute {name!r}")
