"""``IVFIndex``: an inverted file over k-means centroids, with flat, SQ8 or PQ lists.

A thin façade over ``knnkit._core.Ivf`` (Rust); the shared API comes from
:class:`knnkit.index._native.NativeIndex`. Layout, search and deletes:
``crates/knnkit-core/src/ivf/mod.rs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from knnkit import _core
from knnkit._validation import as_matrix
from knnkit.index._common import as_ids
from knnkit.index._native import METRICS, NativeIndex, check_count, check_seed, metric_name
from knnkit.index._result import SearchResult

#: What the inverted lists store.
CODES = ("flat", "sq8", "pq")


class IVFIndex(NativeIndex):
    """Approximate k-nearest-neighbour index: k-means cells, scan the ``nprobe`` nearest.

    Parameters
    ----------
    dim : int
        Number of features of every vector.
    metric : {"euclidean", "sqeuclidean", "inner_product", "cosine"}, default="euclidean"
        Distances come back in the metric's own units, closest first (``inner_product``: the
        similarity, largest first).
    nlist : int, default=1024
        Number of k-means cells. About ``sqrt(n)`` to ``4 * sqrt(n)``; training needs at least
        ``nlist`` vectors (``39 * nlist`` or more trains well). At most ``2**22`` (checked
        before anything is allocated).
    nprobe : int, default=8
        Cells scanned per query (per call: ``search(..., nprobe=)``). Larger: higher recall,
        fewer queries per second; ``nprobe = nlist`` scans everything.
    codes : {"flat", "sq8", "pq"}, default="flat"
        ``"flat"``: lists hold the float32 vectors (exact distances within the probed cells).
        ``"sq8"``: one byte per coordinate. ``"pq"``: ``pq_m`` bytes per vector, product
        quantization of the residual to the cell centroid (IVFADC).
    pq_m : int, default=8
        PQ sub-quantizers; must divide ``dim``.
    nbits : int, default=8
        Bits per PQ sub-quantizer code, 1 to 8 (one byte is stored per code).
    refine : bool, default=True
        With ``sq8``/``pq``: also keep the float32 vectors and re-rank the best ``4 * k`` code
        candidates with them, so returned distances are exact. ``False`` keeps only codes
        (distances approximate; ``get`` decodes).
    seed : int, default=0
        Seed of k-means++ and the training sample: training is deterministic.
    device : str or torch.device, optional
        Where the coarse k-means runs. ``None`` (default): the Rust trainer, on the CPU
        threads. A torch device (``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``): the k-means
        runs there through PyTorch (:mod:`knnkit.backends.torch`, the ``torch`` extra), the
        centroids come back to the CPU and the SQ8 ranges / PQ codebooks are trained by Rust as
        usual. Same seeded algorithm, not the same centroids bit for bit; the recall is
        comparable. Checked at construction: an unavailable device raises ``ValueError`` naming
        it. Only training uses it; the trained index is an ordinary CPU index. ``save`` and
        pickling do not keep it: a loaded index needs no torch (and, if it was saved untrained,
        trains with the Rust k-means).

    Notes
    -----
    Memory per vector: flat ``4 * dim``; sq8 ``dim + 4``; pq ``pq_m``; plus ``4 * dim`` with
    ``refine`` for codes, and about 45 bytes of ids and bookkeeping.

    ``add`` on an untrained index trains it first on those vectors.

    Examples
    --------
    >>> import numpy as np, knnkit
    >>> X = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> ix = knnkit.IVFIndex(16, nlist=16, nprobe=4)
    >>> ix.add(X)
    >>> ix.search(X[:3], k=1).ids.ravel().tolist()
    [0, 1, 2]
    """

    kind = "ivf"

    def __init__(
        self,
        dim: int,
        metric: str = "euclidean",
        nlist: int = 1024,
        nprobe: int = 8,
        codes: str = "flat",
        pq_m: int = 8,
        nbits: int = 8,
        refine: bool = True,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        self.dim = check_count(dim, "dim")
        self.metric: str = metric_name(metric)
        self.nlist = check_count(nlist, "nlist")
        self.nprobe = check_count(nprobe, "nprobe")
        if codes not in CODES:
            raise ValueError(f"codes: expected one of {CODES}, got {codes!r}")
        self.codes = codes
        self.pq_m = check_count(pq_m, "pq_m")
        self.nbits = check_count(nbits, "nbits")
        if codes == "pq" and self.dim % self.pq_m:
            raise ValueError(f"pq_m: expected a divisor of dim={self.dim}, got {pq_m}")
        if codes == "pq" and not 1 <= self.nbits <= 8:
            raise ValueError(f"nbits: expected an integer in [1, 8], got {nbits}")
        self.refine = bool(refine)
        self.seed = check_seed(seed)
        self.device: Any = None
        if device is not None:
            from knnkit.backends.torch import resolve_device

            self.device = resolve_device(device)
        self._native = _core.Ivf(
            self.dim,
            self.metric,
            self.nlist,
            self.codes,
            self.pq_m,
            self.nbits,
            self.refine,
            self.seed,
        )
        self._next_id = 0

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "metric": self.metric,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "codes": self.codes,
            "pq_m": self.pq_m,
            "nbits": self.nbits,
            "refine": self.refine,
            "seed": self.seed,
            # Shown and kept by ``reset`` only when set; never saved (see _saved_params).
            **({} if self.device is None else {"device": str(self.device)}),
        }

    def _saved_params(self) -> dict[str, Any]:
        params = self._params()
        params.pop("device", None)
        return params

    @property
    def is_trained(self) -> bool:
        """True once the centroids (and codebooks) are trained."""
        return self._native.is_trained()

    def train(self, X: Any, n_jobs: int | None = None) -> None:
        """Trains the k-means centroids (and the SQ8 ranges or PQ codebooks) on ``X``
        (at least ``nlist`` rows; a sample of ``256 * nlist`` is used when larger). With
        ``device`` set, the k-means runs on that torch device."""
        X = as_matrix(X, "X", self.dtype, self.dim)
        if X.shape[0] < self.nlist:
            raise ValueError(
                f"X: expected at least nlist={self.nlist} vectors to train, got {X.shape[0]}"
            )
        if self.is_trained:
            # The native call raises the usual error, before any device work.
            self._native.train(X, n_jobs)
        if self.device is None:
            self._native.train(X, n_jobs)
            return
        from knnkit.backends._kmeans import kmeans

        centroids = kmeans(
            X,
            self.nlist,
            seed=self.seed,
            spherical=self.metric == "cosine",
            device=self.device,
        )
        self._native.train(X, n_jobs, centroids)

    def _before_add(self, X: np.ndarray, n_jobs: int | None) -> None:
        if not self.is_trained:
            self.train(X, n_jobs)

    def list_sizes(self) -> np.ndarray:
        """Number of vectors in each cell."""
        return self._native.list_sizes()

    def remove(self, ids: Any) -> int:
        """Removes the vectors with these ids (memory is given back at once); returns how many
        were present."""
        return self._native.remove(as_ids(ids))

    def search(
        self,
        Q: Any,
        k: int,
        filter: Any = None,
        nprobe: int | None = None,
        n_jobs: int | None = None,
    ) -> SearchResult:
        """The (approximate) ``k`` nearest stored vectors of each row of ``Q``, scanning the
        ``nprobe`` nearest cells (the index's ``nprobe`` by default).

        ``filter`` restricts results to some ids (a boolean mask indexed by id, or an array of
        allowed ids) and still returns ``min(k, allowed)`` of them: small filters, or cells
        holding too few allowed vectors, widen the scan to every cell. Missing places hold id
        -1 and distance +inf (-inf for inner product). ``result.stats`` counts distance
        computations.
        """
        return super().search(Q, k, filter=filter, n_jobs=n_jobs, nprobe=nprobe)

    def _search_native(
        self,
        Q: np.ndarray,
        k: int,
        allowed: tuple[np.ndarray | None, np.ndarray | None],
        n_jobs: int | None,
        nprobe: int | None = None,
    ) -> SearchResult:
        D, I, work = self._native.search(Q, k, self._nprobe(nprobe), n_jobs, *allowed)
        return SearchResult(D, I, {"distance_computations": work})

    def _nprobe(self, nprobe: int | None) -> int:
        return self.nprobe if nprobe is None else check_count(nprobe, "nprobe")

    def _range_params(self, search_params: dict[str, Any]) -> dict[str, Any]:
        return {"nprobe": self._nprobe(search_params.get("nprobe"))}


__all__ = ["CODES", "METRICS", "IVFIndex"]
