"""Type stubs for the Rust extension ``knnkit._core`` (glue over ``knnkit-core``)."""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

def knn_search(
    base: npt.ArrayLike,
    queries: npt.ArrayLike,
    k: int,
    metric: str = "euclidean",
    p: float = 2.0,
    base_norms: npt.ArrayLike | None = None,
    n_jobs: int | None = None,
    base_bf16: np.ndarray[Any, np.dtype[np.uint16]] | None = None,
    bf16: bool = True,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.int64]]]: ...
def radius_search(
    base: npt.ArrayLike,
    queries: npt.ArrayLike,
    radius: float | npt.ArrayLike,
    metric: str = "euclidean",
    p: float = 2.0,
    base_norms: npt.ArrayLike | None = None,
    sort: bool = True,
    n_jobs: int | None = None,
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, Any],
    np.ndarray[Any, np.dtype[np.int64]],
]: ...
def squared_norms(data: npt.ArrayLike) -> np.ndarray[Any, Any]: ...
def to_bf16(data: npt.ArrayLike) -> np.ndarray[Any, np.dtype[np.uint16]]: ...
def nan_euclidean_distances(
    x: np.ndarray[Any, np.dtype[np.float64]],
    missing_x: np.ndarray[Any, np.dtype[np.bool_]],
    y: np.ndarray[Any, np.dtype[np.float64]],
    missing_y: np.ndarray[Any, np.dtype[np.bool_]],
    n_jobs: int | None = None,
) -> np.ndarray[Any, np.dtype[np.float64]]: ...
def simd_level() -> str: ...
def metrics() -> dict[str, dict[str, Any]]: ...

# Trees. ``state`` = (kind, metric, p, leaf_size, data_in_tree_order, idx_array, node_info,
# node_radius, node_bounds (rows * n_nodes, d), weights_in_tree_order | None).
_TreeState = tuple[Any, ...]
_Stats = tuple[int, int, int, int]

def tree_build(
    data: npt.ArrayLike,
    kind: str,
    leaf_size: int = 40,
    metric: str = "euclidean",
    p: float = 2.0,
    sample_weight: npt.ArrayLike | None = None,
    n_jobs: int | None = None,
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, Any],
    np.ndarray[Any, Any],
]: ...
def tree_query(
    state: _TreeState,
    X: npt.ArrayLike,
    k: int,
    breadth_first: bool = False,
    dualtree: bool = False,
    n_jobs: int | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.int64]], _Stats]: ...
def tree_query_radius(
    state: _TreeState,
    X: npt.ArrayLike,
    r: float | npt.ArrayLike,
    return_distance: bool = False,
    count_only: bool = False,
    sort_results: bool = False,
    n_jobs: int | None = None,
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, Any],
    _Stats,
]: ...
def tree_kernel_density(
    state: _TreeState,
    X: npt.ArrayLike,
    h: float,
    kernel: str = "gaussian",
    atol: float = 0.0,
    rtol: float = 1e-8,
    breadth_first: bool = True,
    n_jobs: int | None = None,
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], _Stats]: ...
def tree_two_point_correlation(
    state: _TreeState,
    X: npt.ArrayLike,
    r: np.ndarray[Any, np.dtype[np.float64]],
    dualtree: bool = False,
    n_jobs: int | None = None,
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], _Stats]: ...

class Flat:
    """Exact index over float32 or float64 vectors (internal; use ``knnkit.FlatIndex``)."""

    def __init__(
        self,
        dim: int,
        metric: str = "euclidean",
        p: float = 2.0,
        dtype: str = "float32",
        bf16: bool = False,
    ) -> None: ...
    def add(
        self, vectors: np.ndarray[Any, Any], ids: np.ndarray[Any, np.dtype[np.int64]] | None = None
    ) -> None: ...
    def remove(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> int: ...
    def get(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, Any]: ...
    def ids(self) -> np.ndarray[Any, np.dtype[np.int64]]: ...
    def snapshot(
        self,
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.int64]]]: ...
    def __len__(self) -> int: ...
    def next_id(self) -> int: ...
    def memory_usage(self) -> int: ...
    def search(
        self,
        queries: np.ndarray[Any, Any],
        k: int,
        n_jobs: int | None = None,
        allowed_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        allowed_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, np.dtype[np.int64]]]: ...
    def range_search(
        self,
        queries: np.ndarray[Any, Any],
        radius: float | np.ndarray[Any, Any],
        n_jobs: int | None = None,
        allowed_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        allowed_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> tuple[
        np.ndarray[Any, np.dtype[np.int64]],
        np.ndarray[Any, Any],
        np.ndarray[Any, np.dtype[np.int64]],
    ]: ...
    def save(self, path: str, extra: str) -> None: ...
    def encode(self, extra: str) -> bytes: ...
    @staticmethod
    def from_file(file: IndexFile) -> Flat: ...

class IndexFile:
    """A validated index file (internal; see ``knnkit.io``)."""

    @staticmethod
    def open(path: str, mmap: bool = True) -> IndexFile: ...
    def header(self) -> str: ...
    def mapped(self) -> bool: ...
    def names(self) -> list[str]: ...
    def array(self, name: str) -> np.ndarray[Any, Any]: ...
    @staticmethod
    def from_bytes(data: bytes) -> IndexFile: ...

def write_index_file(
    path: str,
    header: str,
    sections: list[tuple[str, str, list[int], np.ndarray[Any, np.dtype[np.uint8]]]],
) -> None: ...

class Hnsw:
    """HNSW graph over float32 vectors (internal; use ``knnkit.HNSWIndex``)."""

    def __init__(
        self,
        dim: int,
        metric: str = "euclidean",
        m: int = 16,
        ef_construction: int = 200,
        seed: int = 0,
        codes: str = "flat",
    ) -> None: ...
    def add(
        self,
        vectors: np.ndarray[Any, np.dtype[np.float32]],
        ids: np.ndarray[Any, np.dtype[np.int64]],
        n_jobs: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None: ...
    def search(
        self,
        queries: np.ndarray[Any, np.dtype[np.float32]],
        k: int,
        ef_search: int = 64,
        n_jobs: int | None = None,
        allowed_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        allowed_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> tuple[
        np.ndarray[Any, np.dtype[np.float32]],
        np.ndarray[Any, np.dtype[np.int64]],
        dict[str, int],
    ]: ...
    def remove(
        self, ids: np.ndarray[Any, np.dtype[np.int64]], n_jobs: int | None = None
    ) -> int: ...
    def consolidate(self, n_jobs: int | None = None) -> None: ...
    def get(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, Any]: ...
    def ids(self) -> np.ndarray[Any, np.dtype[np.int64]]: ...
    def __len__(self) -> int: ...
    def n_deleted(self) -> int: ...
    def memory_usage(self) -> int: ...
    def range_search(
        self,
        queries: np.ndarray[Any, np.dtype[np.float32]],
        radius: np.ndarray[Any, np.dtype[np.float32]],
        ef_search: int,
        n_jobs: int | None = None,
        allowed_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        allowed_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> tuple[
        np.ndarray[Any, np.dtype[np.int64]],
        np.ndarray[Any, np.dtype[np.float32]],
        np.ndarray[Any, np.dtype[np.int64]],
    ]: ...
    def save(self, path: str, extra: str) -> None: ...
    def encode(self, extra: str) -> bytes: ...
    @staticmethod
    def from_file(file: IndexFile) -> Hnsw: ...

class Ivf:
    """Inverted-file index over float32 vectors (internal; use ``knnkit.IVFIndex``)."""

    def __init__(
        self,
        dim: int,
        metric: str = "euclidean",
        nlist: int = 1024,
        codes: str = "flat",
        pq_m: int = 8,
        nbits: int = 8,
        refine: bool = True,
        seed: int = 0,
    ) -> None: ...
    def train(
        self,
        vectors: np.ndarray[Any, np.dtype[np.float32]],
        n_jobs: int | None = None,
        centroids: np.ndarray[Any, np.dtype[np.float32]] | None = None,
    ) -> None: ...
    def is_trained(self) -> bool: ...
    def add(
        self,
        vectors: np.ndarray[Any, np.dtype[np.float32]],
        ids: np.ndarray[Any, np.dtype[np.int64]],
        n_jobs: int | None = None,
    ) -> None: ...
    def search(
        self,
        queries: np.ndarray[Any, np.dtype[np.float32]],
        k: int,
        nprobe: int = 8,
        n_jobs: int | None = None,
        allowed_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        allowed_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.ndarray[Any, np.dtype[np.int64]], int]: ...
    def remove(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> int: ...
    def get(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, Any]: ...
    def ids(self) -> np.ndarray[Any, np.dtype[np.int64]]: ...
    def list_sizes(self) -> np.ndarray[Any, np.dtype[np.uint64]]: ...
    def __len__(self) -> int: ...
    def memory_usage(self) -> int: ...
    def range_search(
        self,
        queries: np.ndarray[Any, np.dtype[np.float32]],
        radius: np.ndarray[Any, np.dtype[np.float32]],
        nprobe: int,
        n_jobs: int | None = None,
        allowed_ids: np.ndarray[Any, np.dtype[np.int64]] | None = None,
        allowed_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> tuple[
        np.ndarray[Any, np.dtype[np.int64]],
        np.ndarray[Any, np.dtype[np.float32]],
        np.ndarray[Any, np.dtype[np.int64]],
    ]: ...
    def save(self, path: str, extra: str) -> None: ...
    def encode(self, extra: str) -> bytes: ...
    @staticmethod
    def from_file(file: IndexFile) -> Ivf: ...

class Db:
    """A store directory (internal; use ``knnkit.Store``)."""

    def __init__(
        self, path: str, durability: str = "full", timeout: float = 5.0, snapshot_every: int = 50000
    ) -> None: ...
    def collection(
        self,
        name: str,
        mode: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Collection: ...
    def list_collections(self) -> list[dict[str, Any]]: ...
    def delete_collection(self, name: str) -> None: ...
    def backup(self, path: str) -> None: ...
    def path(self) -> str: ...

class Collection:
    """A collection of a store (internal; use ``knnkit.Store``)."""

    def info(self) -> dict[str, Any]: ...
    def add(
        self, ids: Any, vectors: Any = None, metadata: Any = None, documents: Any = None
    ) -> int: ...
    def upsert(
        self, ids: Any, vectors: Any = None, metadata: Any = None, documents: Any = None
    ) -> int: ...
    def update(
        self, ids: Any, vectors: Any = None, metadata: Any = None, documents: Any = None
    ) -> int: ...
    def delete(self, ids: Any = None, where: Any = None, where_document: Any = None) -> int: ...
    def count(self, where: Any = None, where_document: Any = None) -> int: ...
    def get(
        self,
        ids: Any = None,
        where: Any = None,
        limit: int | None = None,
        offset: int = 0,
        metadata: bool = True,
        documents: bool = True,
        vectors: bool = False,
        where_document: Any = None,
    ) -> dict[str, Any]: ...
    def query(
        self,
        vectors: np.ndarray[Any, np.dtype[np.float32]] | None = None,
        k: int = 10,
        where: Any = None,
        metadata: bool = True,
        documents: bool = True,
        texts: list[str] | None = None,
        where_document: Any = None,
        mode: str = "vector",
    ) -> dict[str, Any]: ...
    def snapshot(self) -> str: ...
    def check_text_index(self) -> int: ...
    def index_state(self) -> tuple[int, bool]: ...
