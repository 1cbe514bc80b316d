"""What a step cost: wall seconds, CPU seconds, GPU seconds, peak memory and the device, measured
around the step and logged with its MLflow run (training and publishing alike).

CPU seconds are the process's user + system time over the step, all threads together (polars' and
torch's pools do the work, so a thread's own time would miss it): with ``[backfill].concurrency`` > 1,
days publishing at once share the process, so each day's figure includes its neighbours' work and a
sum over them overstates it. GPU seconds are the wall seconds a step held a CUDA device (0 on CPU).
Peak memory is the process's resident peak since the step started (Linux resets the peak through
``/proc/self/clear_refs`` when a step starts, so with steps at once: since the latest of them started;
elsewhere it is the process's peak so far).
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PREFIX = "cost_"


@dataclass(frozen=True)
class Cost:
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    peak_rss_bytes: int = 0
    gpu_peak_bytes: int = 0
    device: str = "cpu"

    def metrics(self) -> dict[str, float]:
        """As MLflow metrics (``cost_*``); the device goes in a tag."""
        return {f"{PREFIX}{k}": float(v) for k, v in asdict(self).items() if k != "device"}

    @classmethod
    def from_metrics(cls, metrics: dict[str, float], device: str = "") -> "Cost":
        fields = {k: metrics.get(f"{PREFIX}{k}", 0.0) for k in ("wall_seconds", "cpu_seconds", "gpu_seconds")}
        peaks = {k: int(metrics.get(f"{PREFIX}{k}", 0)) for k in ("peak_rss_bytes", "gpu_peak_bytes")}
        return cls(**fields, **peaks, device=device)

    def __add__(self, other: "Cost") -> "Cost":
        """Seconds add up; peaks take the larger; devices are listed."""
        devices = sorted({d for d in (self.device, other.device) if d})
        return Cost(self.wall_seconds + other.wall_seconds, self.cpu_seconds + other.cpu_seconds,
                    self.gpu_seconds + other.gpu_seconds, max(self.peak_rss_bytes, other.peak_rss_bytes),
                    max(self.gpu_peak_bytes, other.gpu_peak_bytes), ", ".join(devices))

    def summary(self) -> str:
        gpu = f", {self.gpu_seconds:.1f} GPU s (peak {self.gpu_peak_bytes / 2**30:.2f} GiB)" if self.gpu_seconds else ""
        return (f"{self.wall_seconds:.1f} s wall, {self.cpu_seconds:.1f} CPU s{gpu}, peak RSS "
                f"{self.peak_rss_bytes / 2**30:.2f} GiB on {self.device}")


class Meter:
    """Started at a step's beginning; ``cost()`` is what the step has cost so far, plus ``prior``: what
    was spent on it elsewhere before (a backfill day's share of its batch's validation)."""

    def __init__(self, device: str = "cpu", prior: Cost | None = None):
        self.device, self.prior = device, prior
        _reset_peaks(device)
        self._wall, self._cpu = time.perf_counter(), _cpu_seconds()

    def cost(self) -> Cost:
        wall = time.perf_counter() - self._wall
        gpu = self.device.startswith("cuda")
        own = Cost(wall_seconds=wall, cpu_seconds=_cpu_seconds() - self._cpu, gpu_seconds=wall if gpu else 0.0,
                   peak_rss_bytes=_peak_rss(), gpu_peak_bytes=_gpu_peak() if gpu else 0,
                   device=_device_name(self.device))
        return own + self.prior if self.prior is not None else own


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _reset_peaks(device: str) -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the resident peak
    except OSError:
        pass
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _gpu_peak() -> int:
    import torch

    return int(torch.cuda.max_memory_allocated())


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu ({os.cpu_count()} cores)"
