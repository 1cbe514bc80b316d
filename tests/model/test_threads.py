"""The estimator picks torch's intra-op thread count from the work and gives the process its own back."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ae_models import AutoencoderReducer
from ae_models import threads

pytestmark = [pytest.mark.model, pytest.mark.timeout(120)]


def test_a_small_network_trains_and_encodes_on_one_thread_and_the_count_is_given_back(monkeypatch):
    monkeypatch.setattr(threads, "busy", lambda: False)
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    seen = []
    before = torch.get_num_threads()
    X = np.random.default_rng(0).normal(size=(2000, 12)).astype(np.float32)
    est = AutoencoderReducer(latent_dim=3, epochs=2, callback=lambda step, row: seen.append(torch.get_num_threads()))
    est.fit(X)
    assert est.n_threads_ == 1 and set(seen) == {1}
    assert torch.get_num_threads() == before
    est.transform(X)
    assert torch.get_num_threads() == before


def test_large_steps_get_more_threads_up_to_the_cores_and_one_on_a_busy_machine(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert threads.choose("auto", 64, [32, 16, 4]) == 1
    assert threads.choose("auto", 4096, [2048, 1024, 16]) == 8
    assert threads.choose(3, 64, [32, 16, 4]) == 3
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (7.9, 7.0, 6.0))  # eight cores busy
    assert threads.choose("auto", 4096, [2048, 1024, 16]) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the environment fixes it: torch's count stands
    assert threads.choose("auto", 4096, [2048, 1024, 16]) == torch.get_num_threads()


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(ValueError, match="n_threads"):
        AutoencoderReducer(latent_dim=2, n_threads=0).fit(np.zeros((10, 4), np.float32))
