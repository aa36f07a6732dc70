"""The allocator policy set at import (glibc mallopt thresholds) and its opt-out."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import cnnrs
from cnnrs import _native

GLIBC_LINUX = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _tuned_in_child(env_value):
    env = dict(os.environ)
    env.pop("CNNRS_MALLOPT", None)
    if env_value is not None:
        env["CNNRS_MALLOPT"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "from cnnrs import _native; print(_native.malloc_tuned())"],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC_LINUX, reason="the policy applies to Linux with glibc only")
def test_policy_is_on_by_default_and_opt_out_works():
    assert _tuned_in_child(None) == "True"
    assert _tuned_in_child("1") == "True"
    assert _tuned_in_child("0") == "False"


@pytest.mark.skipif(GLIBC_LINUX, reason="elsewhere nothing is changed")
def test_policy_is_off_without_glibc():
    assert _native.malloc_tuned() is False


def test_large_results_are_correct_under_the_policy():
    # Buffers around the mmap threshold (32 MiB) are allocated, freed and
    # reused: results must not depend on what a reused buffer held before.
    rng = np.random.default_rng(0)
    # (32, 64, 112, 112) is 103 MB: above the threshold, from the heap too.
    for shape in [(8, 64, 128, 128), (2, 3, 5, 7), (8, 64, 56, 56), (32, 64, 112, 112)]:
        x = rng.standard_normal(shape, dtype=np.float32)
        t = cnnrs.tensor(x)
        for _ in range(3):
            got = (t + t).numpy()
            np.testing.assert_array_equal(got, x + x)
