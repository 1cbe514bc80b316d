"""``LatentMap``: a backward map from one latent space to another, so that a model trained on one
encoder version's latents can keep reading the latents of later versions.

A refreshed encoder learns a new space (axes permuted, rotated, rescaled; sometimes a different width).
An affine map fitted by least squares on rows both versions encoded carries the new space into the old
one; affine maps compose into one affine map, so a chain of refreshes (v3 -> v2 -> v1) reads as one
map (v3 -> v1). Which versions a map joins is its owner's record, not the map's.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any, Sequence

import numpy as np

KIND = "affine"  # the only kind of map stored so far; ``from_dict`` refuses others
RIDGE = 1e-6  # added to the diagonal of the source's correlation matrix: scale-free, negligible unless degenerate


@dataclass(frozen=True, eq=False)
class LatentMap:
    """``target ~= source @ weight.T + bias``; ``weight`` is (target_dim, source_dim), ``bias`` (target_dim,).

    Held in float64 (a map is k x k numbers; composing and storing them loses nothing) and read-only;
    ``apply`` returns float32, as readers get latents.
    """

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        weight = np.array(self.weight, dtype=np.float64)  # a copy: the caller's array stays theirs
        bias = np.array(self.bias, dtype=np.float64).reshape(-1)
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"a LatentMap needs weight (target_dim, source_dim) and bias (target_dim,); "
                             f"got weight {weight.shape} and bias {bias.shape}")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ValueError("a LatentMap's weight and bias must be finite")
        weight.flags.writeable = bias.flags.writeable = False
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)

    @property
    def source_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def target_dim(self) -> int:
        return self.weight.shape[0]

    @classmethod
    def identity(cls, dim: int) -> "LatentMap":
        """The map of a space onto itself: what a version's own latents need."""
        return cls(np.eye(dim), np.zeros(dim))

    @classmethod
    def fit(cls, source: np.ndarray, target: np.ndarray, ridge: float = RIDGE) -> "LatentMap":
        """Least squares with an affine term, from the rows both versions encoded.

        ``ridge`` is relative to the source's scale (added to its correlation matrix's diagonal), so a
        constant or duplicated latent column gets a zero or shared weight instead of a blow-up, whatever
        the units. Widths may differ.
        """
        S, T = _matrix(source, "source"), _matrix(target, "target")
        if len(S) != len(T):
            raise ValueError(f"source and target must hold the same rows: {len(S)} vs {len(T)}")
        if len(S) == 0:
            raise ValueError("a LatentMap needs at least one row to fit")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0 (a constant latent column needs it), not {ridge!r}")
        s_mean, t_mean = S.mean(0), T.mean(0)
        Sc = S - s_mean
        s_scale = np.sqrt((Sc * Sc).sum(0))
        s_scale[s_scale == 0] = 1.0  # a constant column stays zero after centring
        Ss = Sc / s_scale
        gram = Ss.T @ Ss + ridge * np.eye(S.shape[1])
        coef = np.linalg.solve(gram, Ss.T @ (T - t_mean))  # (source_dim, target_dim), on scaled columns
        weight = (coef / s_scale[:, None]).T
        return cls(weight, t_mean - weight @ s_mean)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """Latents of the source space, (n, source_dim) or (source_dim,), in the target space, float32."""
        z = np.asarray(z)
        if z.shape[-1:] != (self.source_dim,) or z.ndim > 2:
            raise ValueError(f"this map reads latents of width {self.source_dim}; got an array of shape {z.shape}")
        return (z @ self.weight.T + self.bias).astype(np.float32)

    __call__ = apply

    def then(self, other: "LatentMap") -> "LatentMap":
        """This map followed by ``other`` as one map: (v3 -> v2).then(v2 -> v1) is v3 -> v1."""
        if other.source_dim != self.target_dim:
            raise ValueError(f"cannot compose: this map writes width {self.target_dim}, "
                             f"the next reads width {other.source_dim}")
        return LatentMap(other.weight @ self.weight, other.weight @ self.bias + other.bias)

    def error(self, source: np.ndarray, target: np.ndarray) -> float:
        """Share of the target's variance the map leaves unexplained: 1 - R^2, the columns weighted by
        their variance (0 exact, about 1 no better than the target's mean, above 1 worse)."""
        S, T = _matrix(source, "source"), _matrix(target, "target")
        if S.shape[1] != self.source_dim or T.shape[1] != self.target_dim or len(S) != len(T):
            raise ValueError(f"this map goes from width {self.source_dim} to {self.target_dim}; "
                             f"got source {S.shape} and target {T.shape}")
        residual = ((T - (S @ self.weight.T + self.bias)) ** 2).sum()
        spread = ((T - T.mean(0)) ** 2).sum()
        if spread == 0:
            return 0.0 if residual == 0 else float("inf")
        return float(residual / spread)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists of Python floats, for JSON: ``from_dict`` gives back the same numbers exactly."""
        return {"kind": KIND, "source_dim": self.source_dim, "target_dim": self.target_dim,
                "weight": self.weight.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatentMap":
        if d.get("kind", KIND) != KIND:
            raise ValueError(f"a stored latent map of kind {d.get('kind')!r}; this code reads only {KIND!r}")
        shape = (int(d["target_dim"]), int(d["source_dim"]))
        weight = np.asarray(d["weight"], np.float64)
        if weight.shape != shape:
            raise ValueError(f"a stored latent map says {shape[1]} -> {shape[0]} but its weight is {weight.shape}")
        return cls(weight, np.asarray(d["bias"], np.float64))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatentMap):
            return NotImplemented
        return np.array_equal(self.weight, other.weight) and np.array_equal(self.bias, other.bias)

    __hash__ = None  # type: ignore[assignment]  # equal maps compare by value; arrays are not hashable

    def __repr__(self) -> str:
        return f"LatentMap({self.source_dim} -> {self.target_dim})"


def compose(maps: Sequence[LatentMap]) -> LatentMap:
    """A chain of maps, newest first (v3 -> v2, v2 -> v1), as one map (v3 -> v1)."""
    if not maps:
        raise ValueError("compose needs at least one map")
    return reduce(LatentMap.then, maps)


def _matrix(a: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(a, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"{what} must be a (rows, latent_dim) array, not shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{what} holds NaN or inf: a map is fitted on finite latents only")
    return m
