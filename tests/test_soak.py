"""Long runs, marked slow: a 10,000-step LeNet training soak whose resident
memory must stay flat after warm-up. Run with `pytest -m slow tests/test_soak.py`."""

import os
import resource  # noqa: F401  (POSIX only; the test skips elsewhere)

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import models
from cnnrs.optim import SGD


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_lenet_10k_steps_rss_stays_flat():
    steps = int(os.environ.get("CNNRS_SOAK_STEPS", "10000"))
    cnnrs.manual_seed(0)
    model = models.lenet5()
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = cnnrs.tensor(rng.standard_normal((64, 1, 32, 32)))
    y = rng.integers(0, 10, 64)
    samples = []
    for step in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 499:
            samples.append(rss_mib())
    warm = samples[len(samples) // 5]  # after the first fifth
    growth = max(samples[len(samples) // 5:]) - warm
    print(f"\nsoak: {steps} steps, RSS after warm-up {warm:.1f} MiB, "
          f"max growth after that {growth:.2f} MiB, samples {[round(s, 1) for s in samples]}")
    assert growth < 8.0, samples
