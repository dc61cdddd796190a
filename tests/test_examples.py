"""The examples in examples/ run (quick mode, on the CPU) and agree with the Rust engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_mnist_gpu_quick_on_cpu():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "mnist_gpu.py"), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("same: True") == 2, out.stdout
    assert "accuracy" in out.stdout


def test_mnist_gpu_unavailable_device_is_a_clear_error():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "mnist_gpu.py"), "--device", "nosuchdevice", "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "nosuchdevice" in out.stderr and "Traceback" not in out.stderr
