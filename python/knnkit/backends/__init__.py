"""Optional compute backends, each imported lazily (``import knnkit`` never imports them).

- :mod:`knnkit.backends.torch`: exact k-NN and radius search as PyTorch tensor operations on any
  torch device (CPU, CUDA, MPS). Needs the ``torch`` extra (``pip install knnkit[torch]``).

Status of issue 6 (GPU through PyTorch)
---------------------------------------
Part 1 (done): ``knnkit.backends.torch.knn`` and ``knnkit.backends.torch.radius`` — chunked over
queries and base (chunk sizes from a memory budget), running top-k merge, ties to the lower index,
metrics sqeuclidean / euclidean / inner_product / cosine / manhattan / chebyshev / minkowski,
exact fp32 (float64 stays float64) with a certified candidate + re-rank scheme, opt-in ``fast``
mode (TF32 on CUDA, BF16 elsewhere) that stays exact, no cap on ``k``, numpy or tensors in,
tensors out on the input's device; tests in ``tests/test_torch_backend.py`` (CPU in CI, ``gpu``
marker for CUDA-only tests); torch installed by ``make``'s dependency stamp.

Part 2 (done, no GPU machine lent): ``benchmarks/bench_gpu.py`` (``make bench-gpu``: 10k x 60k
x 784 and 10k x 1M x 128, k = 10, knnkit fp32 / fast against ``torch.cdist`` + ``topk`` and
faiss-gpu, ids checked against the Rust engine; writes ``benchmarks/results/gpu.json`` and the
``gpu`` section of ``docs/benchmarks.md`` only on a GPU), ``examples/mnist_gpu.py`` (digits and
60k x 784 MNIST-shaped, search + ``scatter_add`` vote on the device; ``tests/test_examples.py``),
and ``FlatIndex(..., device=...)`` (numpy store kept, a device tensor of the live rows used for
``search`` / ``range_search``; numpy in -> numpy out, tensor in -> tensor out).

Left for the next parts:

- ``device=`` on the estimators (``knnkit.neighbors``), calling
  :func:`knnkit.backends.torch.knn`; voting / weighting / ``predict_proba`` on the device with
  ``scatter_add``; tensors accepted without a host copy.
- IVF training (k-means) on the GPU through torch; the index usable on the CPU afterwards.
- Run ``make bench-gpu`` and ``pytest -m gpu tests/test_torch_backend.py`` on a CUDA machine and
  record the results (the GPU tests and the benchmark have not yet run on a GPU).
- Performance on the GPU is unmeasured, and the ``gpu``-marked tests have never run. The
  certified fast mode redoes in fp32 every query whose neighbour gaps are smaller than the
  BF16/TF32 error bound (the bound is worst-case: ``|q| max|x|`` times ~6 u_in). On Gaussian
  data (d = 128) BF16 certifies every query; on uniform-noise 784-d data it certifies none. If
  the GPU benchmark shows many redone queries, options are a larger candidate factor, a
  per-row bound (rank by ``key - c |q| |x|``) or split BF16 (hi + lo, three products).
- On the CPU the torch path is about 10x slower than the Rust engine (1,000 x 20,000 x 128,
  k = 10, 2 cores: 0.7 s vs 0.07 s): ``device=None`` must keep using the Rust engine.
- The fp32 matmul precision is a process-wide torch setting, switched for each call; calls
  from several threads at once can see each other's setting (use one thread per device).
"""

from __future__ import annotations

__all__: list[str] = []
