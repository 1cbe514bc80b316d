"""``AutoencoderReducer``: the scikit-learn-style face of the family.

``__init__`` only stores; ``fit`` validates, fits preprocessing, starts the linear path at PCA,
trains, and learns the anomaly threshold; fitted state ends in ``_``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import AEConfig
from .model import Autoencoder, ReconstructionLoss, bernoulli_entropy, categorical_entropy, regulariser
from .preprocess import Preprocessor
from .training import Callback, LoopResult, LoopSettings, evaluate, fit_loop, resolve_device

FORMAT_VERSION = 2
_PCA_SAMPLE = 200_000  # rows the PCA start is computed from


class NotFittedError(ValueError, AttributeError):
    """Raised when a method that needs a fitted model is called before ``fit``."""


class AutoencoderReducer:
    """Reduce a table to ``latent_dim`` columns with an autoencoder; score rows by reconstruction error."""

    def __init__(self, kind: str = "undercomplete", latent_dim: int = 8, hidden: Sequence[int] = (64, 32),
                 activation: str = "relu", epochs: int = 50, batch_size: int = 1024, lr: float = 1e-3,
                 weight_decay: float = 0.0, patience: int = 10, val_fraction: float = 0.1,
                 sparsity: float = 1e-3, noise_std: float = 0.2, mask_prob: float = 0.0, beta: float = 1.0,
                 pca_init: bool = True, scale: str = "standard", real: Sequence[str] | None = None,
                 binary: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
                 anomaly_quantile: float = 0.99, device: str = "auto", precision: str = "auto",
                 seed: int = 0, callback: Callback | None = None):
        self.kind, self.latent_dim, self.hidden, self.activation = kind, latent_dim, tuple(hidden), activation
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.patience, self.val_fraction = patience, val_fraction
        self.sparsity, self.noise_std, self.mask_prob, self.beta = sparsity, noise_std, mask_prob, beta
        self.pca_init, self.scale = pca_init, scale
        self.real, self.binary, self.categorical = real, binary, categorical
        self.anomaly_quantile, self.device, self.precision, self.seed = anomaly_quantile, device, precision, seed
        self.callback = callback

    # ----------------------------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None) -> "AutoencoderReducer":
        """Learn preprocessing, the PCA start and the network from X (array, polars or pandas frame)."""
        self.preprocessor_ = Preprocessor.infer(X, self.real, self.binary, self.categorical, self.scale).fit(X)
        M = self.preprocessor_.transform(X)
        if M.shape[0] < 2:
            raise ValueError(f"fit needs at least 2 rows, got {M.shape[0]}")
        p = self.preprocessor_
        self.config_ = AEConfig(kind=self.kind, latent_dim=self.latent_dim, hidden=self.hidden,
                                activation=self.activation, n_real=len(p.real), n_binary=len(p.binary),
                                cat_cardinalities=p.cardinalities, sparsity=self.sparsity,
                                noise_std=self.noise_std, mask_prob=self.mask_prob, beta=self.beta,
                                pca_init=self.pca_init)
        self.config_.check()
        torch.manual_seed(self.seed)
        self.model_ = Autoencoder(self.config_)
        train, val = self._split(torch.from_numpy(M))
        self.loss_ = self._make_loss(train)
        mean, components = _pca(train, self.config_.latent_dim, self.seed)
        self.pca_val_error_ = self._pca_error(val, mean, components)
        if self.pca_init:
            self.model_.init_pca(mean, components)
        self._train(train, val, self.epochs)
        return self

    def partial_fit(self, X: Any, y: Any = None, epochs: int | None = None) -> "AutoencoderReducer":
        """Continue training a fitted model on new rows (warm start); preprocessing stays as fitted."""
        if not hasattr(self, "model_"):
            return self.fit(X)
        train, val = self._split(torch.from_numpy(self.preprocessor_.transform(X)))
        self._train(train, val, self.epochs if epochs is None else epochs)
        return self

    def _split(self, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_val = int(round(M.shape[0] * self.val_fraction)) if M.shape[0] >= 10 else 0
        perm = torch.randperm(M.shape[0], generator=torch.Generator().manual_seed(self.seed))
        return M[perm[n_val:]], M[perm[:n_val]]

    def _make_loss(self, train: torch.Tensor) -> ReconstructionLoss:
        p, r = self.preprocessor_, len(self.preprocessor_.real)
        b = r + len(p.binary)
        cat_h, start = [], b
        for card in p.cardinalities:
            cat_h.append(categorical_entropy(train[:, start:start + card].mean(0)))
            start += card
        cat_baseline = torch.stack(cat_h) if cat_h else torch.zeros(0)
        return ReconstructionLoss(self.config_, bernoulli_entropy(train[:, r:b].mean(0)), cat_baseline)

    def _step_loss(self, model: Autoencoder, batch: torch.Tensor) -> torch.Tensor:
        out, mu, logvar = model(batch)
        return (self.loss_(out, batch) + regulariser(model.cfg, mu, logvar, self.loss_.n_columns)).mean()

    def _row_error(self, model: Autoencoder, batch: torch.Tensor) -> torch.Tensor:
        out, _, _ = model(batch)
        return self.loss_(out, batch)

    def _row_objective(self, model: Autoencoder, batch: torch.Tensor) -> torch.Tensor:
        """Held-out selection criterion: the error plus the kind's regulariser (else the dense start wins)."""
        out, mu, logvar = model(batch)
        return self.loss_(out, batch) + regulariser(model.cfg, mu, logvar, self.loss_.n_columns)

    def _train(self, train: torch.Tensor, val: torch.Tensor, epochs: int) -> None:
        settings = LoopSettings(epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                                weight_decay=self.weight_decay, patience=self.patience, seed=self.seed,
                                device=self.device, precision=self.precision)
        self.loss_.to(resolve_device(self.device))
        result: LoopResult = fit_loop(self.model_, train, val, self._step_loss, self._row_objective, settings,
                                      self.callback)
        self.model_.cpu()
        self.loss_.cpu()
        self.history_ = result.history
        self.best_epoch_, self.val_error_ = result.best_epoch, result.best_val
        self.train_seconds_, self.train_rows_per_second_ = result.seconds, result.rows_per_second
        scores = self._scores(train)
        self.threshold_ = float(np.quantile(scores, self.anomaly_quantile)) if len(scores) else float("inf")
        # What score_samples averages on data like the training data: the yardstick for drift.
        self.baseline_error_ = float(scores.mean()) if len(scores) else float("nan")

    def _pca_error(self, val: torch.Tensor, mean: torch.Tensor, comps: torch.Tensor) -> float:
        """Held-out error of PCA at the same size, in the model's own per-column unit."""
        if not len(val):
            return float("nan")
        recon = (val - mean) @ comps.T @ comps + mean
        r = self.config_.n_real
        # Binary and categorical parts of PCA's output are probabilities; score them as logits.
        p = recon[:, r:].clamp(1e-3, 1 - 1e-3)
        out = torch.cat([recon[:, :r], torch.log(p / (1 - p))], 1)
        return float(self.loss_(out, val).mean())

    # ---------------------------------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this AutoencoderReducer is not fitted yet: call fit(X) or load(path) first")

    def _scores(self, M: torch.Tensor) -> np.ndarray:
        return evaluate(self.model_, M, self._row_error, torch.device("cpu"), "fp32").numpy()

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        """Rows -> codes (n, latent_dim) float32; the variational kind returns the posterior mean."""
        self._check_fitted()
        M = torch.from_numpy(self.preprocessor_.transform(X))
        self.model_.eval()
        return np.concatenate([self.model_.encode(M[i:i + 65536])[0].numpy()
                               for i in range(0, len(M), 65536)] or [np.zeros((0, self.latent_dim), np.float32)])

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Codes -> rows in input space (real values, binary probabilities, category labels)."""
        self._check_fitted()
        out = self.model_.eval().decode(torch.as_tensor(np.asarray(Z, dtype=np.float32)))
        return self.preprocessor_.inverse(self.loss_.activate(out).numpy())

    def score_samples(self, X: Any) -> np.ndarray:
        """Per-row reconstruction error (higher = more anomalous), float32."""
        self._check_fitted()
        return self._scores(torch.from_numpy(self.preprocessor_.transform(X))).astype(np.float32)

    def transform_and_score(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Codes and per-row error in one pass over the input (what the pipeline publishes)."""
        self._check_fitted()
        M = torch.from_numpy(self.preprocessor_.transform(X))
        codes, errors = [], []
        self.model_.eval()
        with torch.no_grad():
            for i in range(0, len(M), 65536):
                batch = M[i:i + 65536]
                z, _ = self.model_.encode(batch)
                codes.append(z.numpy())
                errors.append(self.loss_(self.model_.decode(z), batch).numpy())
        if not codes:
            return np.zeros((0, self.latent_dim), np.float32), np.zeros(0, np.float32)
        return np.concatenate(codes), np.concatenate(errors).astype(np.float32)

    def is_anomaly(self, X: Any) -> np.ndarray:
        """Rows whose error exceeds the threshold learned on the training data."""
        return self.score_samples(X) > self.threshold_

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Generate n rows from the prior (variational kind only)."""
        self._check_fitted()
        if self.kind != "variational":
            raise ValueError(f"sample() needs kind='variational'; this model is {self.kind!r}")
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return self.inverse_transform(torch.randn(n, self.latent_dim, generator=gen).numpy())

    @property
    def feature_names_in_(self) -> list[str]:
        self._check_fitted()
        return self.preprocessor_.columns

    @property
    def n_features_in_(self) -> int:
        return len(self.feature_names_in_)

    def sparsity_(self, X: Any, tol: float = 1e-2) -> float:
        """Fraction of code entries with |z| < tol (the sparse kind's effect)."""
        return float((np.abs(self.transform(X)) < tol).mean())

    # -------------------------------------------------------------------------------- persistence
    _PARAMS = ("kind", "latent_dim", "hidden", "activation", "epochs", "batch_size", "lr", "weight_decay",
               "patience", "val_fraction", "sparsity", "noise_std", "mask_prob", "beta", "pca_init", "scale",
               "real", "binary", "categorical", "anomaly_quantile", "device", "precision", "seed")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params: Any) -> "AutoencoderReducer":
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(f"unknown parameter {k!r}; valid: {', '.join(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def save(self, path: str | Path) -> Path:
        """Write ``weights.pt`` (tensors only) and ``reducer.json`` (params, config, preprocessing)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {**{f"model.{k}": v for k, v in self.model_.state_dict().items()},
                 **{f"loss.{k}": v for k, v in self.loss_.state_dict().items()}}
        torch.save(state, path / "weights.pt")
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        meta = {"format_version": FORMAT_VERSION, "params": params, "config": self.config_.to_dict(),
                "preprocessor": self.preprocessor_.to_dict(), "threshold": self.threshold_,
                "baseline_error": self.baseline_error_, "val_error": self.val_error_, "pca_val_error": self.pca_val_error_, "history": self.history_}
        (path / "reducer.json").write_text(json.dumps(meta, indent=1, allow_nan=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AutoencoderReducer":
        """Rebuild from ``save``'s folder; tensors are loaded with ``weights_only=True``."""
        path = Path(path)
        try:
            meta = json.loads((path / "reducer.json").read_text())
            state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
        except FileNotFoundError as e:
            raise ValueError(f"{path} is not a saved AutoencoderReducer: {e.filename} is missing") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}")
        params = dict(meta["params"])
        params["hidden"] = tuple(params["hidden"])
        est = cls(**params)
        est.config_ = AEConfig.from_dict(meta["config"])
        est.preprocessor_ = Preprocessor.from_dict(meta["preprocessor"])
        est.model_ = Autoencoder(est.config_)
        p = est.preprocessor_
        est.loss_ = ReconstructionLoss(est.config_, torch.ones(len(p.binary)), torch.ones(len(p.categorical)))
        try:
            est.model_.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
            est.loss_.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("loss.")})
        except RuntimeError as e:
            raise ValueError(f"{path}: the weights do not match the saved config ({str(e).splitlines()[0]}); "
                             "the folder was altered or mixes two models") from None
        est.model_.eval()
        est.threshold_, est.val_error_ = meta["threshold"], meta["val_error"]
        est.baseline_error_ = meta["baseline_error"]
        est.pca_val_error_, est.history_ = meta["pca_val_error"], meta["history"]
        return est


def _pca(M: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and top-k principal axes (min(k, d), d) of up to _PCA_SAMPLE rows."""
    if M.shape[0] > _PCA_SAMPLE:
        M = M[torch.randperm(M.shape[0], generator=torch.Generator().manual_seed(seed))[:_PCA_SAMPLE]]
    X = M.double()
    mean = X.mean(0)
    _, _, Vh = torch.linalg.svd(X - mean, full_matrices=False)
    return mean.float(), Vh[:k].float()
