"""k-NN classification as tensor operations, on the CPU and on a GPU, with knnkit.

The walkthrough of k-NN on the GPU with PyTorch — distances, top-k, a ``scatter_add`` vote —
done with knnkit two ways: ``KNeighborsClassifier(device=...)`` (scikit-learn's API, tensors in
and out, the vote on the device), and the same steps written out with
:func:`knnkit.backends.torch.knn` for the search (exact, chunked, any torch device) and a
``scatter_add`` vote on the same device:

1. scikit-learn's handwritten digits (1,797 images of 8 x 8, a 75/25 split);
2. a 60,000 x 784 set of MNIST shape (the digits upscaled to 28 x 28 with pixel noise,
   ``knnkit.cli._mnist_shaped``) with 10,000 test images.

For each: accuracy, and the time of search + vote with the native CPU engine, then on the
torch CPU device and on ``--device`` (default: CUDA when present). The predictions are checked
against the native engine's; the exit status is 0 when they agree.

Usage: ``python examples/mnist_gpu.py [--device cuda] [--k 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np


def knn_vote(X: Any, y: Any, Q: Any, k: int, n_classes: int) -> Any:
    """Predicted labels of the rows of ``Q``: the majority label of their ``k`` nearest rows of
    ``X`` (ties to the smallest label, as scikit-learn). Tensors in, a tensor out, one device."""
    import torch

    from knnkit.backends.torch import knn

    _, idx = knn(X, Q, k)  # (nq, k) row numbers in X, closest first
    votes = torch.zeros((Q.shape[0], n_classes), dtype=torch.float32, device=Q.device)
    votes.scatter_add_(1, y[idx], torch.ones(idx.shape, dtype=torch.float32, device=Q.device))
    return votes.argmax(1)  # the first maximum: the smallest label among tied ones


def timed(device: Any, fn: Any, repeat: int) -> tuple[float, Any]:
    """Best wall time of ``fn()`` over ``repeat`` calls (synchronised on CUDA), and its result."""
    import torch

    best, out = float("inf"), None
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(title: str, Xtr, ytr, Xte, yte, k: int, devices: list, repeat: int) -> bool:
    """Accuracy and timings: the native engine, then ``KNeighborsClassifier(device=...)`` and the
    hand-written search + vote on each device; True when every answer agrees with the native
    engine's."""
    import torch

    from knnkit.neighbors import KNeighborsClassifier

    n_classes = int(ytr.max()) + 1
    print(f"{title}: {Xtr.shape[0]:,} x {Xtr.shape[1]} train, {Xte.shape[0]:,} test, k = {k}")
    native = KNeighborsClassifier(n_neighbors=k).fit(Xtr, ytr)
    t, ref = timed(torch.device("cpu"), lambda: native.predict(Xte), repeat)
    print(f"   native CPU engine (Rust)  accuracy {(ref == yte).mean():.4f}   {t * 1e3:9.1f} ms")
    ok = True
    for dev in devices:
        t0 = time.perf_counter()
        X, Q = torch.from_numpy(Xtr).to(dev), torch.from_numpy(Xte).to(dev)
        y = torch.from_numpy(ytr.astype(np.int64)).to(dev)
        move = time.perf_counter() - t0
        clf = KNeighborsClassifier(n_neighbors=k, device=dev).fit(X, y)  # tensors stay on dev
        clf.predict(Q[:8])  # warm-up: kernels, allocator
        t_est, pred = timed(dev, lambda clf=clf, Q=Q: clf.predict(Q), repeat)
        t_raw, raw = timed(dev, lambda X=X, y=y, Q=Q: knn_vote(X, y, Q, k, n_classes), repeat)
        pred, raw = pred.cpu().numpy(), raw.cpu().numpy()
        same = bool((pred == ref).all() and (raw == ref).all())
        ok &= same
        print(
            f"   {str(dev):<7} accuracy {(pred == yte).mean():.4f}   "
            f"KNeighborsClassifier(device=) {t_est * 1e3:9.1f} ms   search + scatter_add vote "
            f"{t_raw * 1e3:9.1f} ms   (copy to device {move * 1e3:.1f} ms)   same: {same}"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", help="torch device besides the CPU (default: cuda when present)")
    ap.add_argument("--k", type=int, default=5, help="neighbours that vote (default 5)")
    ap.add_argument("--quick", action="store_true", help="6,000 x 784 and 200 queries (a test)")
    args = ap.parse_args(argv)
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from knnkit.backends.torch import resolve_device
    from knnkit.cli import _mnist_shaped

    devices = [torch.device("cpu")]
    if args.device is not None:
        try:
            dev = resolve_device(args.device)
        except ValueError as e:  # names the device and why it is unavailable
            print(f"mnist_gpu: {e}", file=sys.stderr)
            return 2
        devices += [dev] if dev.type != "cpu" else []
    elif torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    else:
        print("(no CUDA device here: timings on the CPU only)")
    repeat = 1 if args.quick else 3

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    ok = run("1. digits", X_tr, y_tr, X_te, y_te, args.k, devices, repeat)

    n, nq = (6_000, 200) if args.quick else (60_000, 10_000)
    big_tr, ybig_tr = _mnist_shaped(X_tr, y_tr, n, seed=0)
    big_te, ybig_te = _mnist_shaped(X_te, y_te, nq, seed=1)
    ok &= run("2. MNIST shape", big_tr, ybig_tr, big_te, ybig_te, args.k, devices, repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
