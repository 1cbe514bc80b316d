"""One frozen dataclass that fully describes an autoencoder, so a checkpoint can rebuild it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("undercomplete", "linear", "sparse", "denoising", "variational")
LATENT_PREFIX = "latent_"  # the code's columns, as the estimator and the feature table name them: latent_0 ...
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
# Kinds whose regulariser stops an overcomplete code from learning the identity.
REGULARISED_KINDS = ("sparse", "denoising", "variational")


def latent_names(k: int) -> list[str]:
    """The names of a k-wide code's columns: latent_0 .. latent_{k-1}."""
    return [f"{LATENT_PREFIX}{i}" for i in range(k)]


@dataclass(frozen=True)
class AEConfig:
    """Architecture and objective. Widths are known only after preprocessing, hence ``n_real`` etc."""

    kind: str = "undercomplete"
    latent_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)  # the estimator sizes it to the data (reducer.auto_hidden)
    activation: str = "relu"
    n_real: int = 0
    n_binary: int = 0
    cat_cardinalities: tuple[int, ...] = ()
    nullable_index: tuple[int, ...] = ()  # real/binary columns that get a missing-indicator input
    dropout: float = 0.0  # on the MLPs' hidden layers
    sparsity: float = 1e-2  # L1 weight on the code (sparse)
    noise_std: float = 0.2  # Gaussian corruption (denoising)
    mask_prob: float = 0.0  # masking corruption (denoising)
    beta: float = 1.0  # KL weight (variational)
    pca_init: bool = True  # start linear path from PCA; the MLP learns a residual correction
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        """Width of what is reconstructed: real + binary + one-hot categories."""
        return self.n_real + self.n_binary + sum(self.cat_cardinalities)

    @property
    def n_encoder_inputs(self) -> int:
        """What the encoder reads: the reconstructed columns plus one missing-indicator per nullable column."""
        return self.n_inputs + len(self.nullable_index)

    @property
    def code_too_wide(self) -> bool:
        """A plain kind's code at least as wide as its input: it can learn the identity and compress nothing."""
        return bool(self.n_inputs) and self.latent_dim >= self.n_inputs and self.kind not in REGULARISED_KINDS

    def check(self) -> None:
        """Refuse configurations that cannot train into something useful."""
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is unknown; choose one of {', '.join(KINDS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is unknown; choose one of {', '.join(ACTIVATIONS)}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim={self.latent_dim} must be at least 1")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden={self.hidden} must hold positive layer widths")
        if self.code_too_wide:
            raise ValueError(
                f"latent_dim={self.latent_dim} is at least the input width {self.n_inputs}: a plain "
                f"{self.kind} autoencoder with such a code can learn the identity and compress nothing. "
                f"Lower latent_dim, or choose kind 'sparse', 'denoising' or 'variational', whose "
                "regulariser makes an overcomplete code useful."
            )
        if self.kind == "denoising" and self.noise_std <= 0 and self.mask_prob <= 0:
            raise ValueError("kind='denoising' needs noise_std > 0 or mask_prob > 0 to corrupt its input")
        if not 0 <= self.mask_prob < 1:
            raise ValueError(f"mask_prob={self.mask_prob} must be in [0, 1)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["cat_cardinalities"] = list(self.cat_cardinalities)
        d["nullable_index"] = list(self.nullable_index)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AEConfig":
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", ()))
        d["cat_cardinalities"] = tuple(d.get("cat_cardinalities", ()))
        d["nullable_index"] = tuple(d.get("nullable_index", ()))
        return cls(**d)
