"""Results do not depend on the CPU (issue 13, items 1 and 6): the same data give the same bits
with every SIMD level knnkit's kernels can be forced to (``KNNKIT_SIMD``) and every vector width
torch's CPU kernels can be forced to (``ATEN_CPU_CAPABILITY``), on data full of ties and
near-ties (tests/_cpu_digest.py prints digests of neighbours, distances, radius results, votes,
probabilities and LOF scores, for every algorithm, metric and float type).

Only the levels this CPU has can run (a forced level above it is clamped), so an AVX2 machine
checks scalar against AVX2 and an AVX-512 one all three."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "_cpu_digest.py"


def _digests(env_extra: dict[str, str], *args: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), **env_extra}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


def _torch_levels() -> list[str]:
    """torch's CPU capabilities this machine runs (forcing one above it is an illegal
    instruction, not a clamp)."""
    torch = pytest.importorskip("torch")
    best = torch.backends.cpu.get_cpu_capability().lower()
    order = ["default", "avx2", "avx512"]
    return order[: order.index(best) + 1] if best in order else ["default", best]


def test_torch_engine_does_not_depend_on_torchs_cpu_kernels():
    runs = {cap: _digests({"ATEN_CPU_CAPABILITY": cap}, "--torch") for cap in _torch_levels()}
    assert [run["torch"].lower() for run in runs.values()] == list(runs)
    assert len({run["torch_engine"] for run in runs.values()}) == 1, runs


def _simd_levels() -> list[str]:
    import knnkit

    best = knnkit.simd_level()
    if best.startswith("avx512"):
        return ["scalar", "avx2", "avx512"]
    if best.startswith("avx2"):
        return ["scalar", "avx2"]
    return ["scalar"]


def test_native_engines_do_not_depend_on_the_simd_level():
    runs = {level: _digests({"KNNKIT_SIMD": level}, "--native") for level in _simd_levels()}
    assert len({run["native"] for run in runs.values()}) == 1, runs
