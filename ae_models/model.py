"""The autoencoder family as one module whose parts switch with ``AEConfig.kind``.

Every non-linear kind carries a linear path (encoder ``W_e``, decoder ``W_d``) that can be started
at the PCA solution, plus an MLP whose last layer starts at zero and learns a non-linear correction.
Training therefore starts exactly at PCA's reconstruction, and early stopping on held-out error
(which scores the starting point too) never returns a model worse than PCA on that split.
"""
from __future__ import annotations


import torch
from torch import nn
from torch.nn import functional as F

from .config import AEConfig

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def mlp(sizes: list[int], activation: str, zero_last: bool, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with ``activation`` (and dropout, when asked) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if zero_last:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Input rows carry NaN where a real or binary value is missing: ``prepare`` imputes them (buffer
    ``fill``: the column mean or base rate) and appends a missing-indicator per nullable column."""

    def __init__(self, cfg: AEConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d_in, d, k, h = cfg.n_encoder_inputs, cfg.n_inputs, cfg.latent_dim, list(cfg.hidden)
        self.enc_lin = nn.Linear(d_in, k)
        self.dec_lin = nn.Linear(k, d)
        nonlinear = cfg.kind != "linear"
        # With a PCA start the MLPs only add a correction, so they begin at zero.
        zero = cfg.pca_init
        self.enc_mlp = mlp([d_in, *h, k], cfg.activation, zero, cfg.dropout) if nonlinear else None
        self.dec_mlp = mlp([k, *reversed(h), d], cfg.activation, zero, cfg.dropout) if nonlinear else None
        # Variational: log-variance head; starts small so the code begins near its mean.
        self.enc_logvar = mlp([d_in, *h, k], cfg.activation, False) if cfg.kind == "variational" else None
        if self.enc_logvar is not None:
            nn.init.constant_(self.enc_logvar[-1].bias, -4.0)
        self.register_buffer("fill", torch.zeros(cfg.n_real + cfg.n_binary))
        self.register_buffer("nullable", torch.tensor(cfg.nullable_index, dtype=torch.long))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, d) with NaN for missing values -> (B, d_in): imputed, then missing-indicators appended."""
        n = self.fill.numel()
        if n == 0:
            return x
        num = x[:, :n]
        missing = torch.isnan(num)
        parts = [torch.where(missing, self.fill.to(x.dtype), num), x[:, n:]]
        if self.nullable.numel():
            parts.append(missing[:, self.nullable].to(x.dtype))
        return torch.cat(parts, 1)

    @torch.no_grad()
    def init_pca(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """Set the linear path to PCA: z = C (x - mean), x_hat = C^T z + mean. components: (k', d).

        Missing-indicator inputs start with zero weight: the start is exactly PCA of the imputed data.
        """
        k, d = min(components.shape[0], self.cfg.latent_dim), self.cfg.n_inputs
        self.enc_lin.weight.zero_()
        self.dec_lin.weight.zero_()
        self.enc_lin.weight[:k, :d] = components[:k]
        self.dec_lin.weight[:, :k] = components[:k].T
        self.enc_lin.bias.copy_(-(self.enc_lin.weight[:, :d] @ mean))
        self.dec_lin.bias.copy_(mean)
        # Binary and category outputs are logits: read PCA's reconstruction p through the first-order
        # expansion of the link at the column's base rate m: logit(p) ~ logit(m) + (p - m) / (m (1 - m)).
        r = self.cfg.n_real
        m = mean[r:].clamp(1e-3, 1 - 1e-3)
        self.dec_lin.weight[r:] /= (m * (1 - m))[:, None]
        self.dec_lin.bias[r:] = torch.log(m / (1 - m))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, d), NaN where missing -> mean code (B, k) and, for the variational kind, log-variance (B, k)."""
        x = self.prepare(x)
        z = self.enc_lin(x)
        if self.enc_mlp is not None:
            z = z + self.enc_mlp(x)
        logvar = self.enc_logvar(x) if self.enc_logvar is not None else None
        return z, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, k) -> output pre-activations (B, d): real values, binary and category logits."""
        out = self.dec_lin(z)
        if self.dec_mlp is not None:
            out = out + self.dec_mlp(z)
        return out

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Denoising: Gaussian and/or masking noise, only while training (a missing value stays missing)."""
        if self.cfg.kind != "denoising" or not self.training:
            return x
        if self.cfg.noise_std > 0:
            x = x + self.cfg.noise_std * torch.randn_like(x)
        if self.cfg.mask_prob > 0:
            x = x * (torch.rand_like(x) >= self.cfg.mask_prob)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x: (B, d) -> (output pre-activations (B, d), code (B, k), log-variance or None)."""
        mu, logvar = self.encode(self.corrupt(x))
        z = mu
        if logvar is not None and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
        return self.decode(z), mu, logvar


class ReconstructionLoss(nn.Module):
    """Per-row reconstruction error with the loss each column type calls for.

    real -> squared error on scaled values; binary -> BCE on logits; categorical -> softmax CE.
    Binary and categorical losses are divided by that of the best constant guess (the entropy), so
    they weigh like a standardised real column; the row's error is the mean over its observed
    columns (a missing value takes no part in it).
    """

    def __init__(self, cfg: AEConfig, binary_baseline: torch.Tensor, cat_baseline: torch.Tensor):
        super().__init__()
        self.n_real, self.n_binary = cfg.n_real, cfg.n_binary
        self.cards = list(cfg.cat_cardinalities)
        self.register_buffer("binary_baseline", binary_baseline.float())  # (n_binary,)
        self.register_buffer("cat_baseline", cat_baseline.float())  # (n_cat,)
        self.n_columns = self.n_real + self.n_binary + len(self.cards)

    def columns(self, out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """out, x: (B, d) -> per-column errors (B, n_columns) and which entries were observed (B, n_columns)."""
        out = out.float()
        r, b = self.n_real, self.n_real + self.n_binary
        num = x[:, :b]
        observed = ~torch.isnan(num)
        # Missing targets become 0 before the loss and are masked after it: a NaN must not reach a gradient.
        target = torch.where(observed, num, torch.zeros((), dtype=num.dtype, device=num.device))
        parts = [(out[:, :r] - target[:, :r]) ** 2]
        if self.n_binary:
            bce = F.binary_cross_entropy_with_logits(out[:, r:b], target[:, r:], reduction="none")
            parts.append(bce / self.binary_baseline)
        start = b
        for j, card in enumerate(self.cards):
            labels = x[:, start:start + card].argmax(1)
            ce = F.cross_entropy(out[:, start:start + card], labels, reduction="none")
            parts.append((ce / self.cat_baseline[j])[:, None])
            start += card
        errors = torch.cat(parts, 1)
        mask = torch.cat([observed, observed.new_ones(x.shape[0], len(self.cards))], 1)
        return errors * mask, mask

    def forward(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """out, x: (B, d) -> per-row error (B,): the mean over the row's observed columns."""
        errors, mask = self.columns(out, x)
        return errors.sum(1) / mask.sum(1).clamp_min(1)

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        """Output pre-activations -> values in input space: identity, sigmoid, softmax per group."""
        r, b = self.n_real, self.n_real + self.n_binary
        parts = [out[:, :r], torch.sigmoid(out[:, r:b])]
        start = b
        for card in self.cards:
            parts.append(torch.softmax(out[:, start : start + card], 1))
            start += card
        return torch.cat(parts, 1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per row: (B, k) -> (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def regulariser(cfg: AEConfig, mu: torch.Tensor, logvar: torch.Tensor | None, n_columns: int) -> torch.Tensor:
    """The kind's extra training term, per row (B,), in the same per-column unit as the loss."""
    if cfg.kind == "sparse":
        return cfg.sparsity * mu.abs().sum(1)
    if cfg.kind == "variational" and logvar is not None:
        return cfg.beta * kl_divergence(mu.float(), logvar.float()) / n_columns
    return mu.new_zeros(mu.shape[0])


def bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each Bernoulli rate in p (n,), floored so a constant column cannot divide by 0."""
    p = p.clamp(1e-6, 1 - 1e-6)
    return (-(p * p.log() + (1 - p) * (1 - p).log())).clamp_min(1e-3)


def categorical_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of one categorical distribution p (card,), floored likewise."""
    p = p.clamp_min(1e-6)
    return (-(p * p.log()).sum()).clamp_min(1e-3)
