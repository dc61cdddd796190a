"""``knnkit`` command line: ``demo``, ``info FILE``, ``serve`` (the store over HTTP), ``keys``
(API keys for it), ``build`` (a collection or an index file from .npy/.parquet files) and
``query``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def _best_time(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def demo(args: argparse.Namespace) -> int:
    """The main job end to end on scikit-learn's handwritten digits."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import knnkit
    from knnkit.model_selection import select_k
    from knnkit.neighbors import KNeighborsClassifier, NearestNeighbors
    from knnkit.patch import sklearn_original

    # scikit-learn's own class even when knnkit.patch_sklearn() is in effect
    SkKNeighborsClassifier = sklearn_original("KNeighborsClassifier")

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    print(f"knnkit {knnkit.__version__} — kernels: {knnkit.simd_level()}")
    print(
        f"data: scikit-learn digits, {X_tr.shape[0]} train / {X_te.shape[0]} test, {X.shape[1]} features\n"
    )

    print("1. KNeighborsClassifier(n_neighbors=5), fit + predict (best of 3)")
    rows = []
    for name, cls in (("knnkit", KNeighborsClassifier), ("scikit-learn", SkKNeighborsClassifier)):
        t, pred = _best_time(lambda cls=cls: cls(n_neighbors=5).fit(X_tr, y_tr).predict(X_te))
        rows.append((name, t, float((pred == y_te).mean()), pred))
    for name, t, acc, _ in rows:
        print(f"   {name:<13} accuracy {acc:.4f}   time {t * 1e3:8.2f} ms")
    same = bool((rows[0][3] == rows[1][3]).all())
    print(f"   same predictions: {same};  speed-up {rows[1][1] / rows[0][1]:.1f}x\n")

    print("2. choose K by 5-fold cross-validation (one neighbour search per fold)")
    t0 = time.perf_counter()
    table = select_k(X_tr, y_tr, ks=range(1, 22, 2), cv=5)
    print("   " + str(table).replace("\n", "\n   "))
    print(f"   best K = {table.best_k} ({time.perf_counter() - t0:.2f} s)")
    clf = KNeighborsClassifier(n_neighbors=table.best_k).fit(X_tr, y_tr)
    print(f"   test accuracy with K={table.best_k}: {clf.score(X_te, y_te):.4f}\n")

    print("3. nearest-neighbour query: the 5 training digits closest to the first test digit")
    nn = NearestNeighbors(n_neighbors=5).fit(X_tr)
    dist, ind = nn.kneighbors(X_te[:1])
    print(f"   query label {y_te[0]}; neighbours' labels {y_tr[ind[0]].tolist()}")
    print(f"   distances {[round(float(d), 2) for d in dist[0]]}\n")

    # Digits is small enough that fixed costs dominate. At MNIST's shape the engine shows.
    n, nq = (60_000, 1_000) if not args.quick else (6_000, 200)
    print(f"4. MNIST shape: {n:,} x 784 training digits, {nq:,} queries, k=5")
    print("   (28x28 images: the train/test digits above upscaled from 8x8, with pixel noise)")
    big_tr, ybig_tr = _mnist_shaped(X_tr, y_tr, n, seed=0)
    big_te, ybig_te = _mnist_shaped(X_te, y_te, nq, seed=1)
    rows = []
    for name, cls in (("knnkit", KNeighborsClassifier), ("scikit-learn", SkKNeighborsClassifier)):
        clf = cls(n_neighbors=5, algorithm="brute").fit(big_tr, ybig_tr)
        t, pred = _best_time(lambda clf=clf: clf.predict(big_te), repeat=2)
        rows.append((name, t, float((pred == ybig_te).mean()), pred))
    for name, t, acc, _ in rows:
        print(f"   {name:<13} accuracy {acc:.4f}   predict {t * 1e3:8.1f} ms")
    same_big = bool((rows[0][3] == rows[1][3]).all())
    print(f"   same predictions: {same_big};  speed-up {rows[1][1] / rows[0][1]:.1f}x\n")
    recall = _approximate(big_tr, big_te)
    return 0 if same and same_big and recall >= 0.9 else 1


def _approximate(X, Q) -> float:
    """Section 5: an HNSW index on the MNIST-shaped set, one query per call, against exact."""
    import numpy as np

    import knnkit
    from knnkit.testing import recall_at_k

    print(f"5. approximate search: HNSW (m=16, SQ8 traversal) on the same {len(X):,} images")
    t = time.perf_counter()
    ix = knnkit.HNSWIndex(X.shape[1], m=16, ef_construction=100)
    ix.add(X)
    build = time.perf_counter() - t
    exact = knnkit.FlatIndex(X.shape[1])
    exact.add(X)
    rows = []
    for name, search in (
        ("exact FlatIndex", lambda q: exact.search(q, 10, n_jobs=1)),
        ("HNSWIndex ef=32", lambda q: ix.search(q, 10, ef_search=32, n_jobs=1)),
    ):
        t = time.perf_counter()
        ids = np.vstack([search(q[None]).ids for q in Q])
        rows.append((name, len(Q) / (time.perf_counter() - t), ids))
    recall = recall_at_k(rows[1][2], rows[0][2])
    print(f"   build {build:.1f} s; one query per call, 1 thread:")
    for name, qps, _ in rows:
        print(f"   {name:<16} {qps:9,.0f} queries/s")
    print(f"   recall@10 {recall:.3f};  speed-up {rows[1][1] / rows[0][1]:.0f}x")
    return recall


def _mnist_shaped(X, y, n: int, seed: int):
    """``n`` 784-feature float32 images: digits upscaled 8x8 -> 28x28 with pixel noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, X.shape[0], size=n)
    imgs = X[pick].reshape(n, 8, 8)
    idx = np.minimum((np.arange(28) * 8) // 28, 7)
    up = imgs[:, idx][:, :, idx].reshape(n, 784)
    up = up + rng.normal(0, 2.0, size=up.shape).astype(np.float32)
    return np.clip(up, 0, 16).astype(np.float32), y[pick]


def info(args: argparse.Namespace) -> int:
    """Prints what an index file holds (validating it)."""
    import knnkit

    ix = knnkit.load(args.file, mmap=True)
    print(repr(ix))
    print(f"memory: {ix.memory_usage()} bytes")
    return 0


LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    """Runs the store at ``--path`` behind the REST API (uvicorn)."""
    import json
    import os
    import tempfile

    try:
        import uvicorn

        from knnkit.server import Settings
        from knnkit.server.auth import load_keys
    except ImportError as e:
        print(
            f"knnkit serve needs the server extra: pip install 'knnkit[server]' ({e})",
            file=sys.stderr,
        )
        return 2
    if args.keys:
        try:
            n = len(load_keys(args.keys))
        except (OSError, ValueError) as e:
            print(f"--keys: {e}", file=sys.stderr)
            return 2
        if n == 0:
            print(
                "--keys: the file holds no keys (add one with `knnkit keys add`)", file=sys.stderr
            )
            return 2
    if not args.keys and not _is_loopback(args.host) and not args.insecure:
        print(
            f"refusing to serve on {args.host} (not a loopback address) without API keys: pass "
            "--keys keys.toml (make one with `knnkit keys add`), or --insecure to serve "
            "without keys anyway",
            file=sys.stderr,
        )
        return 2
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("--ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    settings = Settings(
        path=os.path.abspath(args.path),
        keys_file=os.path.abspath(args.keys) if args.keys else None,
        cors_origins=[o for o in (args.cors_origins or "").split(",") if o],
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_batch=args.max_batch,
        durability=args.durability,
        timeout=args.timeout,
    )
    os.makedirs(settings.path, exist_ok=True)
    os.environ["KNNKIT_SERVE_SETTINGS"] = settings.to_env()
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes: Prometheus counters are shared through files.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="knnkit-metrics-")
    if args.workers <= 1:
        # Open the store now: a bad path is an error here, not at the first request.
        from knnkit.server import app_from_env

        try:
            app = app_from_env()
        except (OSError, ValueError) as e:
            print(f"--path: {e}", file=sys.stderr)
            return 2
    else:
        app = "knnkit.server:app_from_env"
    scheme = "https" if args.ssl_certfile else "http"
    print(
        json.dumps({"serving": f"{scheme}://{args.host}:{args.port}", "workers": args.workers}),
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        factory=args.workers > 1,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level,
        access_log=args.access_log,
        server_header=False,
    )
    return 0


def keys(args: argparse.Namespace) -> int:
    """``knnkit keys add``: a new API key (printed once; only its hash is stored)."""
    from knnkit.server.auth import add_key, load_keys

    if args.keys_command == "add":
        cols = [c for c in args.collections.split(",") if c]
        try:
            key = add_key(args.file, args.name, args.role, cols)
        except (OSError, ValueError) as e:
            print(f"knnkit keys: {e}", file=sys.stderr)
            return 2
        print(key)
        print(
            f"(key {args.name!r}, role {args.role}, collections {cols}: stored hashed in "
            f"{args.file}; this is the only time it is shown)",
            file=sys.stderr,
        )
        return 0
    for k in load_keys(args.file):
        print(f"{k.name}\t{k.role}\t{','.join(k.collections)}")
    return 0


def _read_table(files: Sequence[str], args: argparse.Namespace):
    """Yields ``(ids, vectors, metadata, documents)`` batches from .npy/.npz/.parquet files."""
    import numpy as np

    start = 0
    for f in files:
        if f.endswith(".parquet"):
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise SystemExit(
                    f"{f}: reading .parquet needs pyarrow (pip install pyarrow)"
                ) from None
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=args.batch_size):
                cols = batch.schema.names
                if args.vector_column not in cols:
                    raise SystemExit(
                        f"{f}: no column {args.vector_column!r} (--vector-column); has {cols}"
                    )
                vec = np.asarray(batch.column(args.vector_column).to_pylist(), dtype=np.float32)
                n = len(vec)
                ids = (
                    [str(x) for x in batch.column(args.id_column).to_pylist()]
                    if args.id_column in cols
                    else [str(start + i) for i in range(n)]
                )
                docs = (
                    batch.column(args.document_column).to_pylist()
                    if args.document_column and args.document_column in cols
                    else None
                )
                meta_cols = [c for c in (args.metadata_columns or "").split(",") if c]
                meta = None
                if meta_cols:
                    data = {c: batch.column(c).to_pylist() for c in meta_cols}
                    meta = [
                        {c: data[c][i] for c in meta_cols if data[c][i] is not None}
                        for i in range(n)
                    ]
                yield ids, vec, meta, docs
                start += n
        else:
            arr = np.load(f, mmap_mode="r") if f.endswith(".npy") else None
            if arr is None:
                z = np.load(f)
                key = args.vector_column if args.vector_column in z else z.files[0]
                arr = z[key]
            if arr.ndim != 2:
                raise SystemExit(f"{f}: expected a 2-d array of vectors, got shape {arr.shape}")
            for s in range(0, len(arr), args.batch_size):
                vec = np.asarray(arr[s : s + args.batch_size], dtype=np.float32)
                yield [str(start + s + i) for i in range(len(vec))], vec, None, None
            start += len(arr)


def _count_rows(files: Sequence[str], args: argparse.Namespace) -> int:
    import numpy as np

    n = 0
    for f in files:
        if f.endswith(".parquet"):
            import pyarrow.parquet as pq

            n += pq.ParquetFile(f).metadata.num_rows
        elif f.endswith(".npy"):
            n += np.load(f, mmap_mode="r").shape[0]
        else:
            z = np.load(f)
            n += z[args.vector_column if args.vector_column in z else z.files[0]].shape[0]
    return n


def build(args: argparse.Namespace) -> int:
    """A collection (in a store directory or on a server) or an index file from vector files."""
    import os

    import knnkit
    from knnkit._progress import reporter

    for f in args.files:
        if not os.path.exists(f):
            print(f"{f}: no such file", file=sys.stderr)
            return 2
        if not f.endswith((".npy", ".npz", ".parquet")):
            print(f"{f}: expected a .npy, .npz or .parquet file", file=sys.stderr)
            return 2
    total = _count_rows(args.files, args)
    show = reporter("build", True if args.progress else None)
    batches = _read_table(args.files, args)
    if args.index_file:
        first = next(batches, None)
        if first is None:
            print("no vectors in the input", file=sys.stderr)
            return 2
        dim = first[1].shape[1]
        metric = args.metric or "euclidean"
        ix = (
            knnkit.HNSWIndex(dim, metric=metric)
            if (args.index or "hnsw") == "hnsw"
            else knnkit.FlatIndex(dim, metric=metric)
        )
        done = 0
        for _, vec, _, _ in [first, *batches]:
            ix.add(vec)
            done += len(vec)
            if show:
                show(done, total)
        ix.save(args.index_file)
        print(f"{args.index_file}: {ix!r}")
        return 0
    if not args.collection:
        print("--collection NAME (or --index-file FILE) is required", file=sys.stderr)
        return 2
    db = knnkit.Client(args.url, api_key=args.api_key) if args.url else knnkit.Store(args.path)
    try:
        col = None
        done = 0
        for ids, vec, meta, docs in batches:
            if col is None:
                col = db.get_or_create_collection(
                    args.collection, dim=vec.shape[1], metric=args.metric, index=args.index
                )
            col.upsert(ids, vec, meta, docs)
            done += len(ids)
            if show:
                show(done, total)
        print(f"{args.collection}: {len(col) if col is not None else 0} records")
    except (ValueError, TypeError, OSError) as e:
        print(f"knnkit build: {e}", file=sys.stderr)
        return 2
    finally:
        if isinstance(db, knnkit.Client):
            db.close()
    return 0


def query(args: argparse.Namespace) -> int:
    """Queries a collection; prints one JSON object per query row."""
    import json

    import numpy as np

    import knnkit

    db = knnkit.Client(args.url, api_key=args.api_key) if args.url else knnkit.Store(args.path)
    try:
        col = db.get_collection(args.collection)
        where = json.loads(args.where) if args.where else None
        where_document = json.loads(args.where_document) if args.where_document else None
        vectors = None
        if args.vectors:
            vectors = np.load(args.vectors)
        elif args.vector:
            vectors = np.asarray([json.loads(args.vector)], dtype=np.float32)
        res = col.query(
            vectors,
            k=args.k,
            where=where,
            texts=args.text or None,
            where_document=where_document,
            mode=args.mode,
        )
    except (ValueError, TypeError, OSError) as e:
        print(f"knnkit query: {e}", file=sys.stderr)
        return 2
    finally:
        if isinstance(db, knnkit.Client):
            db.close()
    rows = len(res["ids"])
    for i in range(rows):
        print(json.dumps({f: res[f][i] for f in res}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="knnkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit, compare with scikit-learn, choose K, query (digits)")
    p_demo.add_argument("--quick", action="store_true", help="smaller MNIST-shaped section")
    p_info = sub.add_parser("info", help="describe an index file")
    p_info.add_argument("file")

    p_serve = sub.add_parser("serve", help="serve a store over HTTP (needs knnkit[server])")
    p_serve.add_argument("--path", required=True, help="the store's directory (created)")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--keys", help="API keys file (TOML; see `knnkit keys add`)")
    p_serve.add_argument("--workers", type=int, default=1, help="worker processes")
    p_serve.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback host without --keys"
    )
    p_serve.add_argument("--ssl-certfile")
    p_serve.add_argument("--ssl-keyfile")
    p_serve.add_argument(
        "--cors-origins", help="comma-separated origins allowed by CORS (default: CORS off)"
    )
    p_serve.add_argument("--max-body-mb", type=float, default=64.0, help="request body limit")
    p_serve.add_argument(
        "--max-batch", type=int, default=50_000, help="records or queries per request"
    )
    p_serve.add_argument("--durability", default="full", choices=["full", "normal"])
    p_serve.add_argument("--timeout", type=float, default=5.0, help="seconds a writer waits")
    p_serve.add_argument("--log-level", default="info")
    p_serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)

    p_keys = sub.add_parser("keys", help="API keys for `knnkit serve`")
    ksub = p_keys.add_subparsers(dest="keys_command", required=True)
    p_add = ksub.add_parser("add", help="make a key: printed once, stored hashed")
    p_add.add_argument("--file", required=True, help="the keys file (created)")
    p_add.add_argument("--name", required=True)
    p_add.add_argument("--role", required=True, choices=["read", "write", "admin"])
    p_add.add_argument("--collections", default="*", help="comma-separated names, or *")
    p_list = ksub.add_parser("list", help="names, roles and collections (never keys)")
    p_list.add_argument("--file", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--path", help="a store directory")
        g.add_argument("--url", help="a `knnkit serve` server")
        p.add_argument("--api-key")
        p.add_argument("--collection")

    p_build = sub.add_parser(
        "build", help="a collection or an index file from .npy/.npz/.parquet vectors"
    )
    p_build.add_argument("files", nargs="+")
    target(p_build)
    p_build.add_argument("--index-file", help="write an index file instead of a collection")
    p_build.add_argument("--index", choices=["hnsw", "flat"])
    p_build.add_argument("--metric")
    p_build.add_argument("--batch-size", type=int, default=10_000)
    p_build.add_argument("--vector-column", default="vector")
    p_build.add_argument("--id-column", default="id")
    p_build.add_argument("--document-column")
    p_build.add_argument("--metadata-columns", help="comma-separated parquet columns")
    p_build.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when it is a terminal)",
    )

    p_query = sub.add_parser("query", help="query a collection; one JSON line per query")
    target(p_query)
    p_query.add_argument("--vectors", help=".npy file of query vectors")
    p_query.add_argument("--vector", help="one query vector as JSON, e.g. '[0.1, 0.2]'")
    p_query.add_argument("--text", action="append", help="a query text (repeatable)")
    p_query.add_argument("-k", type=int, default=10)
    p_query.add_argument("--where", help="a JSON filter on metadata")
    p_query.add_argument("--where-document", help="a JSON filter on documents")
    p_query.add_argument("--mode", default="vector", choices=["vector", "text", "hybrid"])

    args = parser.parse_args(argv)
    needs_store = args.command == "query" or (args.command == "build" and not args.index_file)
    if needs_store and not (args.path or args.url):
        parser.error(f"{args.command}: --path or --url is required")
    if args.command == "query" and not args.collection:
        parser.error("query: --collection is required")
    return {
        "demo": demo,
        "info": info,
        "serve": serve,
        "keys": keys,
        "build": build,
        "query": query,
    }[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
