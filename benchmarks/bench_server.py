"""``knnkit serve`` vs Chroma's server (``chroma run``) under the same load on loopback.

Each server starts on a fresh directory; a driver process loads the same ``--n`` MiniLM vectors
(``../shared/data/words_minilm.npz``, cosine, HNSW) through the server's client, then runs the
same bounded load from ``--clients`` threads (each its own connection): ``--requests`` requests,
70 % queries (k=10, held-out query vectors), 20 % upserts of 10 new records with metadata, 10 %
gets of 10 ids (``knnkit.server.loadgen``). Zero errors are required; the driver then checks that
every upsert that returned is there. Servers run one after the other, interleaved over
``--repeat`` rounds; the table keeps each contender's best round (the box is shared).

    make bench-server                       # writes a section of docs/benchmarks.md
    python benchmarks/bench_server.py --quick --chroma-python .venv-bench/bin/python

The Chroma side runs in the Python of ``--chroma-python`` (the virtual environment of
``make bench-store``, which has chromadb), so its client never touches the test environment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "words_minilm.npz"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Server under load: knnkit serve vs chroma run (issue 18)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_data(n: int, data: Path) -> tuple[np.ndarray, np.ndarray]:
    z = np.load(data)
    return z["base"][:n].astype(np.float32), z["queries"].astype(np.float32)


# -- drivers (run in the contender's Python) -----------------------------------------------------


class ChromaOps:
    def __init__(self, port: int) -> None:
        import chromadb
        from chromadb.config import Settings

        self.client = chromadb.HttpClient(
            host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)
        )
        self.col = self.client.get_collection("bench")

    def query(self, q, k):
        return self.col.query(query_embeddings=q, n_results=k, include=["distances"])

    def upsert(self, ids, vectors, metadata):
        self.col.upsert(ids=ids, embeddings=vectors, metadatas=metadata)

    def get(self, ids):
        return self.col.get(ids=ids, include=["metadatas", "documents"])

    def close(self):
        pass


def drive(args: argparse.Namespace) -> None:
    from knnkit.server import loadgen

    x, queries = load_data(args.n, Path(args.data))
    ids = [str(i) for i in range(len(x))]
    meta = [{"i": i, "even": i % 2 == 0} for i in range(len(x))]
    t0 = time.perf_counter()
    if args.drive == "knnkit":
        import knnkit

        with knnkit.Client(args.url) as c:
            col = c.create_collection("bench", dim=x.shape[1], metric="cosine", index="hnsw")
            for s in range(0, len(x), 5000):
                col.add(ids[s : s + 5000], x[s : s + 5000], meta[s : s + 5000])
            assert len(col) == len(x)

        def make():
            return loadgen.KnnkitOps(args.url, "bench")

        version = knnkit.__version__
    else:
        import chromadb
        from chromadb.config import Settings

        port = int(args.url.rsplit(":", 1)[1])
        c = chromadb.HttpClient(
            host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)
        )
        col = c.create_collection("bench", configuration={"hnsw": {"space": "cosine"}})
        step = min(5000, c.get_max_batch_size())
        for s in range(0, len(x), step):
            col.add(ids=ids[s : s + step], embeddings=x[s : s + step], metadatas=meta[s : s + step])
        assert col.count() == len(x)

        def make():
            return ChromaOps(port)

        version = chromadb.__version__
    ingest = time.perf_counter() - t0
    res = loadgen.run(
        make,
        dim=x.shape[1],
        n_existing=len(x),
        clients=args.clients,
        requests=args.requests,
        batch=10,
        k=10,
        seed=args.seed,
        queries=queries,
        max_seconds=args.max_seconds,
        prefix=f"load{args.seed}",
    )
    # every upsert that returned is there
    missing = 0
    if not res.errors:
        ops = make()
        for s in range(0, len(res.written), 500):
            chunk = res.written[s : s + 500]
            got = ops.get(chunk)
            missing += len(chunk) - len(got["ids"])
        ops.close()
    out = res.summary()
    out.update(
        ingest_s=round(ingest, 2),
        ingest_rps=round(len(x) / ingest, 1),
        missing=missing,
        error_sample=res.errors[:3],
        version=version,
    )
    print("RESULT " + json.dumps(out))


# -- orchestration -------------------------------------------------------------------------------


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout} s: {log.read_text()[-2000:]}")


def run_one(name: str, args: argparse.Namespace, seed: int, work: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    d = Path(tempfile.mkdtemp(prefix=f"bench-server-{name}-", dir=work))
    log = d / "server.log"
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    env["PYTHONPATH"] = str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if name.startswith("knnkit"):
        workers = "2" if name.endswith("x2") else "1"
        cmd = [
            sys.executable,
            "-m",
            "knnkit.cli",
            "serve",
            "--path",
            str(d / "db"),
            "--port",
            str(port),
            "--workers",
            workers,
            "--log-level",
            "warning",
        ]
        ready, py, kind = url + "/readyz", sys.executable, "knnkit"
    else:
        chroma = Path(args.chroma_python).parent / "chroma"
        cmd = [
            str(chroma),
            "run",
            "--path",
            str(d / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        ready, py, kind = url + "/api/v2/heartbeat", args.chroma_python, "chroma"
    with open(log, "wb") as f:
        server = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_ready(ready, server, log)
        drv = [
            py,
            str(Path(__file__).resolve()),
            "--drive",
            kind,
            "--url",
            url,
            "--n",
            str(args.n),
            "--clients",
            str(args.clients),
            "--requests",
            str(args.requests),
            "--seed",
            str(seed),
            "--data",
            str(args.data),
            "--max-seconds",
            str(args.max_seconds),
        ]
        out = subprocess.run(
            drv, capture_output=True, text=True, env=env, timeout=args.max_seconds + 900
        )
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.stderr.strip():
            print(f"{name} driver stderr: {out.stderr[-2000:]}", file=sys.stderr)
        if out.returncode != 0 or not line:
            raise RuntimeError(f"{name} driver failed: {out.stderr[-3000:]}")
        return json.loads(line[-1][7:])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(best: dict[str, dict], rounds: dict[str, list[dict]], args) -> str:
    head = (
        "| server | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | query p50 | "
        "upsert p50 | get p50 | ingest (records/s) | rounds (req/s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    label = {
        "knnkit": "knnkit serve (1 worker)",
        "knnkit-x2": "knnkit serve --workers 2",
        "chroma": "chroma run",
    }
    for name, r in best.items():
        all_rps = ", ".join(f"{x['throughput_rps']:.0f}" for x in rounds[name])
        rows.append(
            f"| {label[name]} {r['version']} | {r['requests']} | {r['errors']} | "
            f"{r['throughput_rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r.get('query_p50_ms', float('nan')):.1f} | {r.get('upsert_p50_ms', float('nan')):.1f} | "
            f"{r.get('get_p50_ms', float('nan')):.1f} | {r['ingest_rps']:.0f} | {all_rps} |"
        )
    return head + "\n".join(rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drive", choices=["knnkit", "chroma"], help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=20_000, help="records loaded before the load")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--repeat", type=int, default=2, help="interleaved rounds")
    p.add_argument("--max-seconds", type=float, default=600)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--chroma-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    p.add_argument("--only", help="comma-separated: knnkit,knnkit-x2,chroma")
    p.add_argument("--quick", action="store_true", help="5k records, 1,000 requests, 1 round")
    p.add_argument("--doc", action="store_true", help="write the section of docs/benchmarks.md")
    args = p.parse_args()
    if args.drive:
        drive(args)
        return
    if args.quick:
        args.n, args.requests, args.repeat = 5000, 1000, 1
    names = ["knnkit", "knnkit-x2", "chroma"]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    if "chroma" in names and not Path(args.chroma_python).exists():
        print(f"no {args.chroma_python}: Chroma skipped (make bench-server installs it)")
        names.remove("chroma")
    import knnkit

    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    rounds: dict[str, list[dict]] = {n: [] for n in names}
    try:
        for r in range(args.repeat):
            for name in names if r % 2 == 0 else names[::-1]:
                res = run_one(name, args, seed=r, work=work)
                print(name, json.dumps(res), flush=True)
                if res["errors"] or res["missing"]:
                    raise SystemExit(f"{name}: {res['errors']} errors, {res['missing']} missing")
                rounds[name].append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {n: max(rs, key=lambda x: x["throughput_rps"]) for n, rs in rounds.items()}
    cpu = cpu_name()
    text = (
        f"{SECTION}\n\n"
        f"`make bench-server` (`benchmarks/bench_server.py`), {time.strftime('%Y-%m-%d')}: "
        f"{cpu}, {os.cpu_count()} vCPUs (a shared box: other jobs may have run), kernels "
        f"`{knnkit.simd_level()}`. Each server on loopback with a fresh directory; the same "
        f"{args.n:,} all-MiniLM-L6-v2 word vectors (384-d, cosine, HNSW with each server's "
        f"defaults) loaded through its client first (the ingest column), then {args.requests:,} "
        f"requests from {args.clients} client threads (each its own connection): 70 % queries "
        f"(k=10, held-out query vectors), 20 % upserts of 10 new records with metadata, 10 % "
        f"gets of 10 ids. Zero errors, and every acknowledged upsert read back afterwards. "
        f"Best of {args.repeat} interleaved rounds (all rounds' throughputs in the last column); "
        f"latencies are per request, client side, including the Python client.\n\n"
        + table(best, rounds, args)
        + '\nknnkit serve writes with `durability="full"` (each write fsynced before the 2xx). '
        "The load generator is Python threads on the same 2 vCPUs as the server, so absolute "
        "figures are bounded by the box; the comparison is what the table is for.\n"
    )
    print("\n" + text)
    if args.doc:
        doc = DOC.read_text()
        if SECTION in doc:
            start = doc.index(SECTION)
            # up to the next heading: a "###" reading of the figures below it is kept
            ends = [
                i
                for i in (doc.find(h, start + len(SECTION)) for h in ("\n## ", "\n### "))
                if i != -1
            ]
            nxt = min(ends) if ends else -1
            doc = doc[:start] + text + ("\n" + doc[nxt + 1 :] if nxt != -1 else "")
        else:
            doc = doc.rstrip("\n") + "\n\n" + text
        DOC.write_text(doc)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
