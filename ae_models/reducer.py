"""``AutoencoderReducer``: the family as a scikit-learn transformer.

``__init__`` only stores; ``fit`` validates, fits preprocessing, sizes the network and the training
to the data, starts the linear path at PCA, trains, and learns the anomaly threshold; fitted state
ends in ``_``. Scores follow scikit-learn's sign: ``score_samples`` is higher for more normal rows,
``anomaly_score`` (its negative) higher for more abnormal ones.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import sparse
from sklearn import exceptions as sk_exceptions
from sklearn.base import BaseEstimator, TransformerMixin

from .config import AEConfig, latent_names
from . import threads
from .hashing import BinaryHasher
from .model import Autoencoder, ReconstructionLoss, bernoulli_entropy, categorical_entropy, regulariser
from .preprocess import Preprocessor, feature_names, is_frame, n_columns, n_rows, position_names
from .training import EVAL_BATCH as ENCODE_BATCH
from .training import Callback, LoopResult, LoopSettings, evaluate, fit_loop, resolve_device

class FormatError(ValueError):
    """A saved folder of another format than this code reads (as opposed to a damaged one)."""


FORMAT_VERSION = 4  # 4: the preprocessor records whether fit saw column names (``named``)
_OLD_FORMATS = (3,)  # formats load still reads (see ``_read_old_format``)
_PCA_SAMPLE = 200_000  # rows the PCA start is computed from
EXACT_PCA_WIDTH = 1024  # inputs up to this wide start from a full SVD; wider ones from subspace iteration ...
PCA_OVERSAMPLE, PCA_ITERATIONS = 10, 4  # ... on k + 10 directions, 4 rounds (exact to 6 digits on one-hot inputs)
ENCODE_BYTES = 64 << 20  # a batch's (rows, width) float32 tensor at most, when encoding: ENCODE_BATCH rows or fewer
AUTO = "auto"


class NotFittedError(sk_exceptions.NotFittedError):
    """Raised when a method that needs a fitted model is called before ``fit``.

    scikit-learn's ``NotFittedError`` (itself a ``ValueError`` and an ``AttributeError``), so code
    written for any scikit-learn estimator catches it.
    """


class AutoencoderReducer(TransformerMixin, BaseEstimator):
    """Reduce a table to ``latent_dim`` columns with an autoencoder; score rows by how well it rebuilds them.

    Parameters
    ----------
    kind : "undercomplete" | "linear" | "sparse" | "denoising" | "variational"
        The family member; a code at least as wide as the input needs a regularised kind.
    latent_dim : int
        Width of the code (the published latents).
    hidden : "auto" or widths of the encoder's hidden layers (the decoder mirrors them)
        ``auto`` scales with the input width (see :func:`auto_hidden`).
    activation : "relu" | "tanh" | "sigmoid" | "gelu"
    epochs : "auto" or int
        ``auto`` trains for a budget of optimizer steps suited to the row count
        (:func:`auto_plan`); an int caps training at that many passes. Early stopping on held-out
        rows ends either sooner.
    batch_size : "auto" or int
        ``auto`` grows with the square root of the row count, from 32 to 4,096 rows.
    lr : "auto" or float
        AdamW's learning rate; ``auto`` is 3e-3 up to a batch of 32 and grows with the square of
        the batch above it to 1e-2, so every larger auto batch (a power of two) trains at 1e-2.
    weight_decay : AdamW's decoupled weight decay.
    dropout : float
        On the hidden layers. Off by default: on real tables it only raised held-out error; early
        stopping on held-out rows is the regulariser that scales with the row count.
    patience : int
        Held-out measurements without improvement before training stops.
    val_fraction : float
        Rows held out for early stopping, the PCA comparison and the anomaly threshold.
    sparsity, noise_std, mask_prob, beta :
        The sparse kind's L1 weight, the denoising kind's corruption, the variational kind's KL weight.
    pca_init : bool
        Start the linear path at PCA, so training begins at PCA's reconstruction.
    scale : "auto" | "standard" | "shared" | "none"
        How real columns are scaled (see :class:`~ae_models.preprocess.Preprocessor`); ``auto``
        keeps one unit for columns that share one (pixels) and standardises heterogeneous ones.
    real, binary, categorical : column names of each group; by default numeric columns are real and
        the others categorical. Missing values (null, NaN) are allowed in every group.
    anomaly_quantile : float
        ``is_anomaly`` flags rows whose ``anomaly_score`` is above this quantile of the held-out
        rows' scores (of the training rows' when fewer than ``MIN_CALIBRATION_ROWS`` are held out).
    code_bits : int
        0, or a multiple of 8: also learn a binary code of that many bits per row (see
        :mod:`~ae_models.hashing`), for retrieval by Hamming distance (``binary_codes``).
    device : "auto" | "cpu" | "cuda";  precision : "auto" | "fp32" | "bf16"
    seed : int
        Seeds the split, initialisation, batches and noise (the process's global RNG is left alone).
    n_threads : "auto" | int
        torch's intra-op threads while fitting and encoding, the process's own count given back after.
        "auto": from the size of a step's work (one thread for a small network, whose threads would only
        wait for each other), and one while other processes keep every core busy; torch's own count
        when ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set. ``n_threads_`` is what the fit used.
    callback : called as ``callback(step, row)`` at every held-out measurement; not saved by ``save``.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        The columns the model reads, in its order; only when fitted on a frame whose column names are
        strings (recorded at fit and saved, never inferred from the names). A frame is then read by
        column name (its order and extra columns do not matter; a missing one is refused), an array by
        position in this order. Fitted on an array, everything is read by position in that array's
        order (a frame with a warning). A folder saved by an earlier release (format 3) did not record
        it: it loads with names, read as that release read them (see ``_read_old_format``).
    n_features_in_ : int
        How many columns the model reads.
    threshold_ : float
        The ``anomaly_score`` above which ``is_anomaly`` flags a row.
    baseline_score_ : float
        The mean ``anomaly_score`` of the held-out rows (of the training rows when too few are held
        out): what new data like the training data averages, the yardstick for drift.
    latent_range_ : ndarray (2, latent_dim)
        The training codes' range, widened by 5 % each side: the grid of int8 storage.
    hasher_ : BinaryHasher or None
        The binary code, with ``code_bits``.
    val_error_, pca_val_error_ : held-out error of the kept state and of PCA at the same size.
    val_mse_, pca_val_mse_ : the same as mean squared error of the real columns, in ``error_unit_``.
    history_, plan_, best_step_, steps_ : the training's measurements, its sizing and length.
    """

    def __init__(self, kind: str = AEConfig.kind, latent_dim: int = AEConfig.latent_dim,
                 hidden: Sequence[int] | str = AUTO, activation: str = AEConfig.activation, epochs: int | str = AUTO,
                 batch_size: int | str = AUTO, lr: float | str = AUTO, weight_decay: float = 0.0,
                 dropout: float = AEConfig.dropout, patience: int = 10, val_fraction: float = 0.1,
                 sparsity: float = AEConfig.sparsity, noise_std: float = AEConfig.noise_std,
                 mask_prob: float = AEConfig.mask_prob, beta: float = AEConfig.beta,
                 pca_init: bool = AEConfig.pca_init, scale: str = AUTO,
                 real: Sequence[str] | None = None, binary: Sequence[str] | None = None,
                 categorical: Sequence[str] | None = None, anomaly_quantile: float = 0.99, code_bits: int = 0,
                 device: str = "auto", precision: str = "auto", seed: int = 0, n_threads: int | str = AUTO,
                 callback: Callback | None = None):
        self.kind = kind
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.patience = patience
        self.val_fraction = val_fraction
        self.sparsity = sparsity
        self.noise_std = noise_std
        self.mask_prob = mask_prob
        self.beta = beta
        self.pca_init = pca_init
        self.scale = scale
        self.real = real
        self.binary = binary
        self.categorical = categorical
        self.anomaly_quantile = anomaly_quantile
        self.code_bits = code_bits
        self.device = device
        self.precision = precision
        self.seed = seed
        self.n_threads = n_threads
        self.callback = callback

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value is imputed, flagged and left out of the error
        tags.transformer_tags.preserves_dtype = ["float32"]  # codes are float32 whatever the input
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # ----------------------------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None) -> "AutoencoderReducer":
        """Learn preprocessing, the PCA start and the network from X (array, polars or pandas frame); y is ignored."""
        self._check_params()
        X = _table(X)
        if n_rows(X) < 2:
            raise ValueError(f"fit needs at least 2 rows; X has {n_rows(X)} sample(s)")
        self.preprocessor_ = Preprocessor.infer(X, self.real, self.binary, self.categorical, self.scale).fit(X)
        p = self.preprocessor_
        train, val = self._split(torch.from_numpy(p.transform(X)))  # the whole matrix is not kept beside them
        self.plan_ = auto_plan(len(train), len(p.numeric) + sum(p.cardinalities), self.hidden, self.epochs,
                               self.batch_size, self.lr)
        self.config_ = AEConfig(kind=self.kind, latent_dim=self.latent_dim, hidden=tuple(self.plan_["hidden"]),
                                activation=self.activation, n_real=len(p.real), n_binary=len(p.binary),
                                cat_cardinalities=p.cardinalities, nullable_index=p.nullable_index,
                                dropout=self.dropout, sparsity=self.sparsity, noise_std=self.noise_std,
                                mask_prob=self.mask_prob, beta=self.beta, pca_init=self.pca_init)
        self.config_.check()
        self.n_threads_ = self._training_threads()
        with _seeded(self.seed, self.device), threads.using(self.n_threads_):
            self.model_ = Autoencoder(self.config_)
            self.model_.fill.copy_(torch.tensor(p.fill, dtype=torch.float32))
            self.loss_ = self._make_loss(train)
            mean, components = _pca(train, self.config_.latent_dim, self.seed, self._imputed)
            self._pca_errors(val, mean, components)
            if self.pca_init:
                self.model_.init_pca(mean, components)
            self._train(train, val, self.plan_["max_steps"])
        return self

    def partial_fit(self, X: Any, y: Any = None, epochs: int | None = None) -> "AutoencoderReducer":
        """Continue training a fitted model on new rows (warm start); preprocessing stays as fitted.

        Unfitted, this is ``fit``. ``epochs`` caps the passes over X; by default the step budget of
        the fitted plan applies. The threshold and the other fitted statistics are learned anew on X.
        """
        if not hasattr(self, "model_"):
            return self.fit(X)
        train, val = self._split(self._matrix(X))
        per_epoch = max(1, -(-len(train) // self.plan_["batch_size"]))
        self.n_threads_ = self._training_threads()
        with _seeded(self.seed, self.device), threads.using(self.n_threads_):
            # PCA's error on these rows, not the first fit's: the comparison reported is this run's
            self._pca_errors(val, *_pca(train, self.config_.latent_dim, self.seed, self._imputed))
            self._train(train, val, self.plan_["max_steps"] if epochs is None else epochs * per_epoch)
        return self

    def _check_params(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "lr"):
            value = getattr(self, name)
            if isinstance(value, str) and value != AUTO:
                raise ValueError(f"{name}={value!r}: use 'auto' or a number")
        if not isinstance(self.epochs, str) and self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} must be at least 1 (or 'auto')")
        if not isinstance(self.batch_size, str) and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1 (or 'auto')")
        if self.n_threads != AUTO and (isinstance(self.n_threads, str) or self.n_threads < 1):
            raise ValueError(f"n_threads={self.n_threads!r}: use 'auto' or a number of threads, at least 1")
        if self.code_bits < 0 or self.code_bits % 8:
            raise ValueError(f"code_bits={self.code_bits}: use 0 (no binary code) or a positive multiple of 8")

    def _split(self, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_val = int(round(M.shape[0] * self.val_fraction)) if M.shape[0] >= 10 else 0
        perm = torch.randperm(M.shape[0], generator=torch.Generator().manual_seed(self.seed))
        return M[perm[n_val:]], M[perm[:n_val]]

    def _imputed(self, M: torch.Tensor) -> torch.Tensor:
        """Rows with missing values at their fill values: what PCA and the threshold statistics read. M
        itself when nothing is missing: a wide matrix (many category levels) is not copied for nothing."""
        if not torch.isnan(M[:, :self.config_.n_real + self.config_.n_binary]).any():
            return M
        return self.model_.prepare(M)[:, :self.config_.n_inputs]

    def _make_loss(self, train: torch.Tensor) -> ReconstructionLoss:
        p, r = self.preprocessor_, len(self.preprocessor_.real)
        b = r + len(p.binary)
        cat_h, start = [], b
        for card in p.cardinalities:
            cat_h.append(categorical_entropy(train[:, start:start + card].mean(0)))
            start += card
        cat_baseline = torch.stack(cat_h) if cat_h else torch.zeros(0)
        return ReconstructionLoss(self.config_, bernoulli_entropy(train[:, r:b].nanmean(0)), cat_baseline)

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

    def _train(self, train: torch.Tensor, val: torch.Tensor, max_steps: int) -> None:
        plan = self.plan_
        settings = LoopSettings(max_steps=max_steps, batch_size=plan["batch_size"], lr=plan["lr"],
                                weight_decay=self.weight_decay, eval_every=plan["eval_every"],
                                patience=self.patience, seed=self.seed, device=self.device,
                                precision=self.precision)
        self.loss_.to(resolve_device(self.device))
        # early stopping reads a fixed subset of the held-out rows: enough to rank states, cheap to repeat
        result: LoopResult = fit_loop(self.model_, train, val[:EVAL_ROWS], self._step_loss, self._row_objective,
                                      settings, self.callback)
        self.model_.cpu()
        self.loss_.cpu()
        self.history_ = result.history
        self.best_step_, self.val_error_, self.steps_ = result.best_step, result.best_val, result.steps
        self.train_seconds_, self.train_rows_per_second_ = result.seconds, result.rows_per_second
        self.val_mse_ = self._real_mse(val, self._reconstruct(val)) if len(val) else float("nan")
        self._fit_anomaly_model(train, val)
        self._fit_latent_stats(train)

    @torch.no_grad()
    def _fit_anomaly_model(self, train: torch.Tensor, val: torch.Tensor) -> None:
        """What the anomaly score measures against, learned on the data (anomalies included).

        The code's location and precision come from the training rows' codes by a trimmed estimate
        (three rounds, each dropping the 10 % of rows farthest away, so the anomalies in the data do
        not widen it). The mean reconstruction error, the threshold and the baseline score come from
        the held-out rows when there are at least ``MIN_CALIBRATION_ROWS`` of them: the network
        rebuilds its own training rows better than new ones, so a threshold set on them would flag
        far more than ``1 - anomaly_quantile`` of new rows.
        """
        codes, errors, mask = self._codes_and_errors(train)
        keep = codes.astype(np.float64)
        mean, precision = np.zeros(self.latent_dim), np.eye(self.latent_dim)
        for _ in range(3 if len(keep) > 2 * self.latent_dim else 0):
            mean = keep.mean(0)
            cov = np.atleast_2d(np.cov(keep, rowvar=False))
            cov += np.eye(len(cov)) * max(1e-9, 1e-6 * np.trace(cov) / len(cov))
            precision = np.linalg.inv(cov)
            d2 = _mahalanobis(codes, mean, precision)
            keep = codes[d2 <= np.quantile(d2, 0.9)].astype(np.float64)
        self.code_mean_, self.code_precision_ = mean.tolist(), precision.tolist()
        if len(val) >= MIN_CALIBRATION_ROWS:
            codes, errors, mask = self._codes_and_errors(val)
        row_error = errors.sum(1) / np.maximum(mask.sum(1), 1)
        self.error_mean_ = max(float(row_error.mean()), 1e-12) if len(row_error) else 1.0
        scores = self._anomaly_scores(codes, errors, mask)
        self.threshold_ = float(np.quantile(scores, self.anomaly_quantile)) if len(scores) else float("inf")
        # The mean anomaly score of rows the network did not train on: what new data like the training
        # data should average, the yardstick for drift.
        self.baseline_score_ = float(scores.mean()) if len(scores) else float("nan")

    def _fit_latent_stats(self, train: torch.Tensor) -> None:
        """The training rows' latent range (int8 storage's grid) and, with ``code_bits``, the binary code."""
        codes = self._encode(train)
        self.hasher_ = BinaryHasher.fit(codes, self.code_bits, self.seed) if self.code_bits else None
        lo, hi = (codes.min(0), codes.max(0)) if len(codes) else (np.zeros(self.latent_dim), np.ones(self.latent_dim))
        margin = 0.05 * (hi - lo)
        self.latent_range_ = np.stack([lo - margin, hi + margin]).astype(np.float32)

    def _training_threads(self) -> int:
        """The thread count for training: a step is one batch forward and back."""
        return threads.choose(self.n_threads, self.plan_["batch_size"], self._widths())

    def _widths(self) -> list[int]:
        """The encoder's layer widths, input to code (the decoder mirrors them)."""
        return [self.config_.n_encoder_inputs, *self.config_.hidden, self.config_.latent_dim]

    def _encoding(self, rows: int):
        """The thread count for encoding ``rows`` rows (a forward pass: a third of a training step's work)."""
        return threads.using(threads.choose(self.n_threads, max(1, min(rows, self._batch_rows) // 3), self._widths()))

    def _codes_and_errors(self, M: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes (n, k), per-column errors (n, c) and which entries were observed (n, c), in batches."""
        with self._encoding(len(M)):
            return self._codes_and_errors_in_batches(M)

    @torch.inference_mode()
    def _codes_and_errors_in_batches(self, M: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.model_.training:  # eval() walks every module: skipped when there is nothing to switch
            self.model_.eval()
        rows = self._batch_rows
        if 0 < len(M) <= rows:  # one batch (every served request): no lists to join
            z, _ = self.model_.encode(M)
            e, m = self.loss_.columns(self.model_.decode(z), M)
            return z.numpy(), e.numpy(), m.numpy()
        codes, errors, masks = [], [], []
        for i in range(0, len(M), rows):
            batch = M[i:i + rows]
            z, _ = self.model_.encode(batch)
            e, m = self.loss_.columns(self.model_.decode(z), batch)
            codes.append(z.numpy())
            errors.append(e.numpy())
            masks.append(m.numpy())
        if not codes:
            c = self.loss_.n_columns
            return np.zeros((0, self.latent_dim), np.float32), np.zeros((0, c), np.float32), np.zeros((0, c), bool)
        return np.concatenate(codes), np.concatenate(errors), np.concatenate(masks)

    def _anomaly_scores(self, codes: np.ndarray, errors: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The anomaly score (higher = more abnormal), a combined index after PCA monitoring's SPE + T^2:
        the row's reconstruction error over the calibration rows' mean (``error_mean_``), plus the
        squared Mahalanobis distance of its code over the code's width. Each part averages about 1 on
        rows like the training rows: the first finds rows the model cannot rebuild, the second rows it
        rebuilds well but places where the data are rare."""
        residual, density = self._anomaly_parts(codes, errors, mask)
        return (residual + density / self.latent_dim).astype(np.float32)

    def _anomaly_parts(self, codes: np.ndarray, errors: np.ndarray,
                       mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The score's two parts: the row's error over ``error_mean_``, its code's squared distance."""
        residual = errors.sum(1) / np.maximum(mask.sum(1), 1) / self.error_mean_
        return residual, _mahalanobis(codes, *self._code_stats())

    def _code_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """``code_mean_`` and ``code_precision_`` (lists, as saved) as arrays, converted once per fit or load."""
        cached = self.__dict__.get("_code_stats_cache")
        if cached is None or cached[0] is not self.code_mean_ or cached[1] is not self.code_precision_:
            cached = (self.code_mean_, self.code_precision_, np.asarray(self.code_mean_),
                      np.asarray(self.code_precision_))
            self.__dict__["_code_stats_cache"] = cached
        return cached[2], cached[3]

    @property
    def _batch_rows(self) -> int:
        """Rows encoded at once: ``batch_rows`` of the encoder's input width."""
        return batch_rows(self.config_.n_encoder_inputs)

    @torch.no_grad()
    def _reconstruct(self, M: torch.Tensor) -> torch.Tensor:
        self.model_.eval()
        rows = self._batch_rows
        return torch.cat([self.model_.decode(self.model_.encode(M[i:i + rows])[0])
                          for i in range(0, len(M), rows)]) if len(M) else M

    def _real_mse(self, M: torch.Tensor, out: torch.Tensor) -> float:
        """Mean squared error over the observed real entries, in the unit ``error_unit_`` names."""
        r = self.config_.n_real
        if not r or not len(M):
            return float("nan")
        target = M[:, :r].double()
        observed = ~torch.isnan(target)
        scale = torch.as_tensor(self.preprocessor_.std, dtype=torch.float64) if self.error_unit_ == "data" else 1.0
        diff = torch.where(observed, (out[:, :r].double() - target) * scale, torch.zeros((), dtype=torch.float64))
        return float((diff ** 2).sum() / observed.sum().clamp_min(1))

    @property
    def error_unit_(self) -> str:
        """``data`` when real columns keep their own unit (``shared``/``none`` scaling), else ``standardised``."""
        return "standardised" if self.preprocessor_.scaling == "standard" else "data"

    @torch.no_grad()
    def _pca_errors(self, val: torch.Tensor, mean: torch.Tensor, comps: torch.Tensor) -> None:
        """PCA at the same size on the held-out rows: in the model's unit and in ``error_unit_``."""
        if not len(val):
            self.pca_val_error_ = self.pca_val_mse_ = float("nan")
            return
        recon = (self._imputed(val) - mean) @ comps.T @ comps + mean
        r = self.config_.n_real
        # Binary and categorical parts of PCA's output are probabilities; score them as logits.
        p = recon[:, r:].clamp(1e-3, 1 - 1e-3)
        out = torch.cat([recon[:, :r], torch.log(p / (1 - p))], 1)
        # on the rows early stopping measures val_error_ on, so the two compare like with like
        self.pca_val_error_ = float(self.loss_(out[:EVAL_ROWS], val[:EVAL_ROWS]).mean())
        self.pca_val_mse_ = self._real_mse(val, recon)

    # ---------------------------------------------------------------------------------- inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this AutoencoderReducer is not fitted yet: call fit(X) or load(path) first")

    def _matrix(self, X: Any) -> torch.Tensor:
        """X -> the model's input matrix. A frame is read by name when the model was fitted on names;
        anything else by position, and must have the fitted width (see ``Preprocessor._read``)."""
        self._check_fitted()
        X = _table(X)
        p = self.preprocessor_
        names = feature_names(X)
        if names is None or not p.named:  # read by position: the width must be the fitted one
            if n_columns(X) != self.n_features_in_:
                raise ValueError(f"X has {n_columns(X)} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input (columns in the order {p.columns[:10]}"
                                 f"{'...' if self.n_features_in_ > 10 else ''})")
        if names is None and p.named:
            warnings.warn(f"X does not have valid feature names, but {type(self).__name__} was fitted with "
                          f"feature names: its columns are read in the fitted order {p.columns[:10]}"
                          f"{'...' if self.n_features_in_ > 10 else ''}", UserWarning, stacklevel=3)
        elif names is not None and not p.named:
            warnings.warn(f"X has feature names, but {type(self).__name__} was fitted without feature names: "
                          "its columns are read by position", UserWarning, stacklevel=3)
        return torch.from_numpy(p.transform(X))

    @torch.no_grad()
    def _encode(self, M: torch.Tensor) -> np.ndarray:
        self.model_.eval()
        rows = self._batch_rows
        with self._encoding(len(M)):
            return np.concatenate([self.model_.encode(M[i:i + rows])[0].numpy()
                                   for i in range(0, len(M), rows)] or [np.zeros((0, self.latent_dim), np.float32)])

    def transform(self, X: Any) -> np.ndarray:
        """Rows -> codes (n, latent_dim) float32; the variational kind returns the posterior mean."""
        return self._encode(self._matrix(X))

    @torch.no_grad()
    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Codes -> rows in input space (real values, binary probabilities, category labels)."""
        self._check_fitted()
        out = self.model_.eval().decode(torch.as_tensor(np.asarray(Z, dtype=np.float32)))
        return self.preprocessor_.inverse(self.loss_.activate(out).numpy())

    def anomaly_score(self, X: Any) -> np.ndarray:
        """Per-row anomaly score, float32: higher = more abnormal; ``is_anomaly`` compares it with ``threshold_``.

        The row's reconstruction error over that of a typical row (``error_mean_``), plus its
        code's squared Mahalanobis distance over the code's width: each part is about 1 on rows like
        the training rows (see ``_anomaly_scores``). What the feature table stores in its ``anomaly_score`` column.
        """
        return self.transform_and_anomaly_score(X)[1]

    def score_samples(self, X: Any) -> np.ndarray:
        """scikit-learn's sign: higher = more normal. The negative of ``anomaly_score``, float32.

        As ``IsolationForest.score_samples``, so code written for scikit-learn's outlier scores
        reads it the right way round; use ``anomaly_score`` where higher should mean more abnormal.
        """
        return -self.anomaly_score(X)

    def reconstruction_error(self, X: Any) -> np.ndarray:
        """Per-row reconstruction error (higher = worse rebuilt), float32: the training objective,
        the mean over the row's observed columns, without the code's density."""
        M = self._matrix(X)
        return evaluate(self.model_, M, self._row_error, torch.device("cpu"), "fp32", self._batch_rows).numpy()

    def transform_and_anomaly_score(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(transform(X), anomaly_score(X))`` in one pass over the input: the codes (n, latent_dim)
        and the per-row anomaly scores (n,), higher = more abnormal (what the pipeline publishes)."""
        codes, errors, mask = self._codes_and_errors(self._matrix(X))
        return codes, self._anomaly_scores(codes, errors, mask)

    def transform_and_score(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Deprecated name of ``transform_and_anomaly_score``: ``(codes, anomaly scores)``, higher =
        more abnormal. Kept so code written against earlier versions (served models' code) still runs."""
        warnings.warn("transform_and_score is renamed transform_and_anomaly_score (same result: codes and "
                      "anomaly scores, higher = more abnormal)", DeprecationWarning, stacklevel=2)
        return self.transform_and_anomaly_score(X)

    def binary_codes(self, X: Any) -> np.ndarray:
        """Rows -> their learned binary codes, packed: (n, code_bits / 8) uint8."""
        return self.hash_latents(self.transform(X))

    def hash_latents(self, Z: Any) -> np.ndarray:
        """Latents (n, latent_dim) -> their binary codes, packed: (n, code_bits / 8) uint8."""
        self._check_fitted()
        if self.hasher_ is None:
            raise ValueError("this model has no binary code: fit it with code_bits > 0")
        return self.hasher_.encode(Z)

    def is_anomaly(self, X: Any) -> np.ndarray:
        """Rows whose ``anomaly_score`` is above ``threshold_`` (bool)."""
        return self.anomaly_score(X) > self.threshold_

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Generate n rows from the prior (variational kind only)."""
        self._check_fitted()
        if self.kind != "variational":
            raise ValueError(f"sample() needs kind='variational'; this model is {self.kind!r}")
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return self.inverse_transform(torch.randn(n, self.latent_dim, generator=gen).numpy())

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The columns the model reads, in its order; defined only when fitted on a frame (as in scikit-learn)."""
        self._check_fitted()
        if not self.preprocessor_.named:
            raise AttributeError("this AutoencoderReducer was fitted on an array: its columns have no names")
        return np.asarray(self.preprocessor_.columns, dtype=object)

    @property
    def n_features_in_(self) -> int:
        self._check_fitted()
        return len(self.preprocessor_.columns)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the code's columns, as the feature table and the served model call them: latent_0 ...

        ``input_features``, when given, must be the fitted input columns (scikit-learn's contract).
        """
        if input_features is not None:
            names = [str(c) for c in input_features]
            if len(names) != self.n_features_in_:
                raise ValueError(f"input_features should have length equal to number of features "
                                 f"({self.n_features_in_}), got {len(names)}")
            if self.preprocessor_.named and names != self.preprocessor_.columns:
                raise ValueError("input_features is not equal to feature_names_in_")
        return np.asarray(latent_names(self.latent_dim), dtype=object)

    def code_sparsity(self, X: Any, tol: float = 1e-2) -> float:
        """Fraction of X's code entries with |z| < tol (what the sparse kind's L1 term buys)."""
        return float((np.abs(self.transform(X)) < tol).mean())

    # -------------------------------------------------------------------------------- persistence
    _UNSAVED = ("callback",)  # code, not data: the caller sets it again after load
    _FITTED = ("threshold_", "baseline_score_", "val_error_", "pca_val_error_", "val_mse_", "pca_val_mse_",
               "history_", "plan_", "best_step_", "steps_", "error_mean_", "code_mean_", "code_precision_")
    _RENAMED = {"baseline_score": "baseline_error"}  # saved key -> its name in folders saved before

    def save(self, path: str | Path) -> Path:
        """Write ``weights.pt`` (tensors only) and ``reducer.json`` (params, config, preprocessing)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {**{f"model.{k}": v for k, v in self.model_.state_dict().items()},
                 **{f"loss.{k}": v for k, v in self.loss_.state_dict().items()}}
        torch.save(state, path / "weights.pt")
        params = {k: (list(v) if isinstance(v, tuple) else v)
                  for k, v in self.get_params(deep=False).items() if k not in self._UNSAVED}
        fitted = {k.rstrip("_"): getattr(self, k) for k in self._FITTED}
        # each renamed value also under its old key, so earlier versions of ae_models load this folder
        fitted.update({old: fitted[new] for new, old in self._RENAMED.items()})
        meta = {"format_version": FORMAT_VERSION, "params": params, "config": self.config_.to_dict(),
                "preprocessor": self.preprocessor_.to_dict(), "latent_range": self.latent_range_.tolist(),
                "hasher": self.hasher_.to_dict() if self.hasher_ is not None else None, **fitted}
        (path / "reducer.json").write_text(json.dumps(meta, indent=1, allow_nan=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "AutoencoderReducer":
        """Rebuild from ``save``'s folder (this version's or an earlier one's); tensors are loaded with
        ``weights_only=True``, so the folder cannot run code."""
        path = Path(path)
        try:
            meta = json.loads((path / "reducer.json").read_text())
        except FileNotFoundError as e:
            raise ValueError(f"{path} is not a saved AutoencoderReducer: {e.filename} is missing") from None
        except ValueError as e:  # not JSON (truncated, overwritten): the folder is damaged
            raise ValueError(f"{path / 'reducer.json'} is not valid JSON ({e}): the folder is damaged") from None
        if meta.get("format_version") in _OLD_FORMATS:
            meta = _read_old_format(meta)
        if meta.get("format_version") != FORMAT_VERSION:
            raise FormatError(f"{path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}; "
                              "train the model again with this version of ae_models")
        try:
            state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
        except FileNotFoundError as e:
            raise ValueError(f"{path} is not a saved AutoencoderReducer: {e.filename} is missing") from None
        except Exception as e:  # truncated or overwritten: torch and pickle raise a zoo of types
            raise ValueError(f"{path / 'weights.pt'} cannot be read ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}): the folder is damaged") from None
        params = dict(meta["params"])
        if isinstance(params.get("hidden"), list):
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
        for k in cls._FITTED:
            key = k.rstrip("_")
            setattr(est, k, meta[key] if key in meta else meta[cls._RENAMED[key]])
        est.latent_range_ = np.asarray(meta["latent_range"], np.float32)
        est.hasher_ = BinaryHasher.from_dict(meta["hasher"]) if meta.get("hasher") else None  # absent before code_bits
        return est


def _read_old_format(meta: dict[str, Any]) -> dict[str, Any]:
    """A ``reducer.json`` written by an earlier release (format 3), as this version's format.

    Reading an old file only: format 3 did not record whether fit saw column names, and its release
    guessed it from their shape. It read a frame by name, and an array's columns by the digits of
    names x<digits> (x0, x07 ...), by position in the fitted order otherwise. The file cannot say
    whether x0 .. x9 were an array's positions or a table's names, so it is read as that release read
    it: by name (``named``), arrays in the digits' order (``array_order``). Nowhere else looks at a
    name's shape.
    """
    preprocessor = dict(meta["preprocessor"])
    columns = [*preprocessor["real"], *preprocessor.get("binary", []), *preprocessor.get("categorical", [])]
    digits = [int(c[1:]) if c[:1] == "x" and c[1:].isdecimal() else -1 for c in columns]
    if sorted(digits) == list(range(len(columns))) and digits != sorted(digits):
        preprocessor["array_order"] = [c for _, c in sorted(zip(digits, columns))]
    preprocessor["named"] = True
    return {**meta, "format_version": FORMAT_VERSION, "preprocessor": preprocessor}


def batch_rows(width: int) -> int:
    """Rows encoded at once for an input ``width`` columns wide: ``ENCODE_BATCH``, or fewer, so that a
    batch's (rows, width) float32 tensors stay within ``ENCODE_BYTES`` (a wide input: many category levels)."""
    return max(1, min(ENCODE_BATCH, ENCODE_BYTES // (4 * max(width, 1))))


def auto_hidden(width: int) -> tuple[int, int]:
    """Hidden widths for an input ``width`` columns wide: the next power of two at or above twice the
    width, between 64 and 512, then half of that."""
    first = int(min(512, max(64, 2 ** math.ceil(math.log2(max(2 * width, 1))))))
    return first, first // 2


def fit_memory(n_rows: int, width: int, hidden: Sequence[int] | str = AUTO,
               latent_dim: int = AEConfig.latent_dim, val_fraction: float = 0.1) -> int:
    """About the bytes ``fit`` allocates for ``n_rows`` rows of ``width`` model inputs (a real or binary
    column is one, a category one per level), at its peak: the float32 matrix twice while it is split
    into training and held-out rows; or once beside the exact PCA start's float64 copies (inputs up to
    ``EXACT_PCA_WIDTH`` wide), or beside the held-out batch early stopping evaluates (a few tensors as
    wide as the input); plus the network's weights six times (gradients, AdamW's two moments, the best
    state kept and its copy). Nothing in it grows with the square of the width."""
    hidden = auto_hidden(width) if isinstance(hidden, str) else tuple(hidden)
    weights = width * (3 * max(hidden, default=0) + 2 * latent_dim)  # the layers that touch the input
    pca = 4 * min(n_rows, _PCA_SAMPLE) if width <= EXACT_PCA_WIDTH else 0
    held_out = 5 * min(EVAL_ROWS, math.ceil(n_rows * val_fraction))
    return 4 * (width * (n_rows + max(n_rows, pca, held_out)) + 6 * weights)


def auto_plan(n_train: int, width: int, hidden: Sequence[int] | str, epochs: int | str,
              batch_size: int | str, lr: float | str = AUTO) -> dict[str, Any]:
    """Network and training size for ``n_train`` rows of ``width`` model columns; explicit settings win.

    Training is sized in optimizer steps, not passes: a 1,000-row table needs many passes, a
    10M-row table less than one. ``batch_size`` auto is the power of two nearest sqrt(rows)
    (32 to 4,096); ``epochs`` auto is a budget of ``STEP_BUDGET`` steps or ``EPOCH_BUDGET`` passes,
    whichever is fewer; early stopping on held-out error ends training sooner. ``lr`` auto is 3e-3
    up to a batch of 32 (under 2,048 training rows, what is left after the early-stopping hold-out)
    and grows with the square of the batch above it to the cap, 1e-2, which every larger auto batch
    gets: on real tables a higher rate hurt at a batch of 32, and the cap trained better than a
    square-root rule at the batches above it.
    """
    batch = int(batch_size) if not isinstance(batch_size, str) else int(
        min(4096, max(32, 2 ** round(math.log2(math.sqrt(max(n_train, 1)))))))
    per_epoch = max(1, -(-n_train // batch))
    steps = min(STEP_BUDGET, EPOCH_BUDGET * per_epoch) if isinstance(epochs, str) else int(epochs) * per_epoch
    rate = float(lr) if not isinstance(lr, str) else min(LR_MAX, LR_BASE * max(1.0, batch / 32) ** 2)
    return {"hidden": list(auto_hidden(width) if isinstance(hidden, str) else hidden), "batch_size": batch, "lr": rate,
            "max_steps": steps, "eval_every": min(max(per_epoch, EVAL_EVERY_MIN), EVAL_EVERY)}


LR_BASE, LR_MAX = 3e-3, 1e-2  # the auto learning rate up to a batch of 32, and its cap
STEP_BUDGET = 50_000  # optimizer steps of an auto-sized training, at most ...
EPOCH_BUDGET = 300  # ... and passes over the data, at most (small tables reach the step budget slowly)
EVAL_ROWS = 65_536  # held-out rows each early-stopping measurement reads, at most
MIN_CALIBRATION_ROWS = 100  # held-out rows needed to set the threshold on them rather than on training rows
EVAL_EVERY = 200  # steps between held-out measurements: an epoch, but at most this many ...
EVAL_EVERY_MIN = 50  # ... and at least this many (a tiny table's epoch is too short to judge progress by)


class _seeded:
    """Seed torch for one fit without touching the process's global RNG (fork, seed, restore)."""

    def __init__(self, seed: int, device: str):
        cuda = resolve_device(device).type == "cuda"
        self._fork = torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else [])
        self._seed = seed

    def __enter__(self) -> None:
        self._fork.__enter__()
        torch.manual_seed(self._seed)

    def __exit__(self, *exc: Any) -> None:
        self._fork.__exit__(*exc)


def _table(X: Any) -> Any:
    """X as the preprocessing reads it: a frame as it is, anything else as a 2-D array; refuse sparse,
    1-D and complex input with a reason rather than misreading it."""
    if sparse.issparse(X):
        raise TypeError("sparse input is not supported: pass a dense array or a frame")
    if is_frame(X):
        return X
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows x columns), got shape {arr.shape}. Reshape your data: "
                         "X.reshape(-1, 1) if it is one column, X.reshape(1, -1) if it is one row")
    if arr.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if arr.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    return arr


def _mahalanobis(codes: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``codes`` (n, k) from ``mean`` under ``precision``."""
    d = codes.astype(np.float64) - mean
    return np.einsum("ij,jk,ik->i", d, precision, d)


def _pca(M: torch.Tensor, k: int, seed: int,
         prepare: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and top-k principal axes (min(k, d), d) of up to _PCA_SAMPLE rows, ``prepare``d (imputed)
    once sampled. Up to ``EXACT_PCA_WIDTH`` columns by a full SVD; a wider input (category levels) by
    ``_top_axes``: a full SVD's memory grows with the square of the width (6,000 levels took 3 GB)."""
    if M.shape[0] > _PCA_SAMPLE:
        M = M[torch.randperm(M.shape[0], generator=torch.Generator().manual_seed(seed))[:_PCA_SAMPLE]]
    M = prepare(M)
    if M.shape[1] > EXACT_PCA_WIDTH:
        mean = M.T @ torch.ones(M.shape[0]) / M.shape[0]  # float32 sums: a float64 mean would copy M
        return mean, _top_axes(M, mean, min(k, *M.shape), seed)
    X = M.double()
    mean = X.mean(0)
    _, _, Vh = torch.linalg.svd(X.sub_(mean), full_matrices=False)
    return mean.float(), Vh[:k].float()


def _top_axes(M: torch.Tensor, mean: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """The top-k principal axes (k, d) of M's rows about ``mean``, by seeded subspace iteration (Halko,
    Martinsson and Tropp 2009, algorithm 4.4) on M less its mean, never formed: memory (rows + width) x
    (k + ``PCA_OVERSAMPLE``) beside M. Matches the full SVD's reconstruction error on one-hot inputs."""
    n, d = M.shape
    q = min(k + PCA_OVERSAMPLE, n, d)
    mu = mean[None, :]  # (1, d)

    def right(V: torch.Tensor) -> torch.Tensor:  # (M - 1 mu^T) V: (n, q)
        return M @ V - mu @ V

    def left(U: torch.Tensor) -> torch.Tensor:  # (M - 1 mu^T)^T U: (d, q)
        return M.T @ U - mu.T @ U.sum(0, keepdim=True)

    Q = torch.linalg.qr(right(torch.randn(d, q, generator=torch.Generator().manual_seed(seed)))).Q
    for _ in range(PCA_ITERATIONS):
        Q = torch.linalg.qr(right(torch.linalg.qr(left(Q)).Q)).Q
    _, _, Vh = torch.linalg.svd(left(Q).T.double(), full_matrices=False)  # of Q^T (M - 1 mu^T): (q, d)
    return Vh[:k].float()
