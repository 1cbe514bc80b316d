"""Training rows/s: AutoencoderReducer.fit vs a bare PyTorch loop over the same network and tensors.

    .venv/bin/python bench/train_throughput.py [--rows N] [--cols D] [--batch B] [--epochs E]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ae_models import AEConfig, AutoencoderReducer
from ae_models.model import Autoencoder


def bare_loop(X: torch.Tensor, cfg: AEConfig, epochs: int, batch: int, device: str) -> float:
    """The hand-written baseline: permute, slice, forward, MSE, backward, Adam. Returns rows/s."""
    torch.manual_seed(0)
    model = Autoencoder(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X = X.to(device)
    use_bf16 = device == "cuda"
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(X), device=device)
        for i in range(0, len(X), batch):
            xb = X[perm[i:i + batch]]
            with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
                out, _, _ = model(xb)
                loss = ((out.float() - xb) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return len(X) * epochs / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--cols", type=int, default=64)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="alternating runs of each; medians are reported")
    a = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(0)
    X = np.tanh(rng.normal(size=(a.rows, 8)) @ rng.normal(size=(8, a.cols))).astype(np.float32)
    est_rates, wall_rates, base_rates = [], [], []
    for _ in range(a.repeat):  # alternate, so drifts in machine load hit both sides alike
        est = AutoencoderReducer(latent_dim=16, hidden=(256, 128), epochs=a.epochs, batch_size=a.batch,
                                 val_fraction=0.0, patience=10**6, seed=0, device=device)
        t0 = time.perf_counter()
        est.fit(X)
        wall_rates.append(a.rows * a.epochs / (time.perf_counter() - t0))
        est_rates.append(est.train_rows_per_second_)
        base_rates.append(bare_loop(torch.from_numpy(X), est.config_, a.epochs, a.batch, device))
    est_rate, base_rate = float(np.median(est_rates)), float(np.median(base_rates))
    print(f"device {device} ({torch.get_num_threads()} threads); {a.rows} rows x {a.cols} cols, batch {a.batch}, "
          f"{a.epochs} epochs, network {a.cols}->256->128->16; median of {a.repeat} alternating runs")
    print(f"bare PyTorch loop        {base_rate:12,.0f} rows/s")
    print(f"AutoencoderReducer.fit   {est_rate:12,.0f} rows/s  (training loop; whole fit incl. preprocessing, "
          f"PCA start and threshold: {np.median(wall_rates):,.0f} rows/s)")
    print(f"ratio fit / bare         {est_rate / base_rate:12.2f}")


if __name__ == "__main__":
    main()
