"""Autoencoders for tabular data: pure PyTorch and NumPy, usable without the pipeline."""
from .config import AEConfig, KINDS
from .reducer import AutoencoderReducer, NotFittedError

__all__ = ["AEConfig", "AutoencoderReducer", "KINDS", "NotFittedError"]
