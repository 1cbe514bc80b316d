"""GPU training and encoding: AutoencoderReducer beside the bare PyTorch loop on one CUDA device.

The network of issue #14's reference (256 -> 512 -> 128 -> 32, ReLU): rows/s of a bare loop (data
on the device, Adam, MSE; tf32, and bf16 autocast) at batch 4,096 and 65,536, beside
``AutoencoderReducer.fit`` at the same batches and with its defaults (``batch_size="auto"``);
``transform`` rows/s; and pinned host-to-device copies in GB/s. Reference numbers measured with a
bare loop on one H100: 1.9M rows/s at batch 4,096, 27M at 65,536 (tf32), encoding 230-380M rows/s,
pinned copies 55 GB/s.

Without a CUDA device it says so and stops (the CPU's numbers are ``bench/train_throughput.py``'s);
``--device cpu --rows 20000 --steps 10 --batches 256`` runs the same code on the CPU (fp32 only), to
check the script itself.

    .venv/bin/python bench/gpu_train.py [--rows 4000000] [--steps 200] [--device cuda]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ae_models import AEConfig, AutoencoderReducer  # noqa: E402
from ae_models.model import Autoencoder  # noqa: E402

COLS, HIDDEN, LATENT = 256, (512, 128), 32


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bare_loop(X: torch.Tensor, batch: int, steps: int, bf16: bool, device: str) -> float:
    """Rows/s of the hand-written loop: data already on the device, random batches, Adam, MSE."""
    torch.manual_seed(0)
    model = Autoencoder(AEConfig(latent_dim=LATENT, hidden=HIDDEN, n_real=COLS, pca_init=False)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps + 10):  # 10 warm-up steps
        if step == 10:
            _sync(device)
            start = time.perf_counter()
        xb = X[torch.randint(0, len(X), (batch,), device=device)]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out, _, _ = model(xb)
            loss = ((out.float() - xb) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def estimator(X: np.ndarray, batch: int | str, steps: int, device: str) -> tuple[float, float, str]:
    """The estimator's training-loop rows/s (its own clock), its transform rows/s, and its plan."""
    est = AutoencoderReducer(latent_dim=LATENT, hidden=HIDDEN, batch_size=batch, epochs="auto", val_fraction=0.01,
                             patience=10**6, device=device, seed=0)
    per_epoch = -(-len(X) // (batch if isinstance(batch, int) else 4096))
    est.set_params(epochs=max(1, -(-steps // per_epoch)))  # about `steps` steps
    est.fit(X)
    _sync(device)
    start = time.perf_counter()
    est.transform(X)
    encode = len(X) / (time.perf_counter() - start)
    return est.train_rows_per_second_, encode, f"batch {est.plan_['batch_size']}, lr {est.plan_['lr']:.2g}"


def h2d_gbps(rows: int) -> float:
    """Pinned host memory to the device, in 256 MiB chunks."""
    host = torch.empty((rows, COLS), dtype=torch.float32).pin_memory()
    chunk = (256 * 2**20) // (COLS * 4)
    dev = torch.empty((chunk, COLS), dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, rows - chunk + 1, chunk):
        dev.copy_(host[i:i + chunk], non_blocking=True)
    torch.cuda.synchronize()
    return (rows // chunk) * chunk * COLS * 4 / (time.perf_counter() - start) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps timed per measurement")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--batches", type=int, nargs="+", default=[4096, 65536])
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device on this machine: no GPU numbers (CPU training: bench/train_throughput.py; "
              "`--device cpu` runs this script's code on the CPU)")
        return
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}: a check of the script")
    rng = np.random.default_rng(0)
    X = np.tanh(rng.standard_normal((a.rows, 16), dtype=np.float32) @ rng.standard_normal((16, COLS), dtype=np.float32))
    Xd = torch.from_numpy(X).to(a.device)
    print(f"{a.rows:,} rows x {COLS} columns, network {COLS}->{HIDDEN[0]}->{HIDDEN[1]}->{LATENT}, {a.steps} steps each")
    for batch in a.batches:
        tf32 = bare_loop(Xd, batch, a.steps, False, a.device)
        bf16 = bare_loop(Xd, batch, a.steps, True, a.device) if a.device == "cuda" else 0.0  # CPU bf16: emulated
        fit, encode, plan = estimator(X, batch, a.steps, a.device)
        print(f"batch {batch:>6}: bare loop {tf32:14,.0f} rows/s (fp32/tf32), {bf16:14,.0f} (bf16) | fit "
              f"{fit:14,.0f} rows/s = {fit / max(tf32, bf16):.2f}x the faster bare loop | transform {encode:,.0f} rows/s")
    fit, encode, plan = estimator(X, "auto", a.steps, a.device)
    print(f"defaults ({plan}): fit {fit:,.0f} rows/s, transform {encode:,.0f} rows/s")
    if a.device == "cuda":
        print(f"pinned host-to-device copies: {h2d_gbps(min(a.rows, 4_000_000)):.1f} GB/s")


if __name__ == "__main__":
    main()
