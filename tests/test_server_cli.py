"""``knnkit build`` and ``knnkit query`` (on a store directory, an index file, a server), and
``knnkit serve`` over TLS."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from _server import Server, needs_server

import knnkit
from knnkit.cli import main


def test_build_a_collection_and_query_it(tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((250, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", x[:100])
    np.save(tmp_path / "b.npy", x[100:])
    store = str(tmp_path / "db")
    args = [
        "build",
        str(tmp_path / "a.npy"),
        str(tmp_path / "b.npy"),
        "--path",
        store,
        "--collection",
        "v",
        "--index",
        "flat",
        "--metric",
        "euclidean",
        "--batch-size",
        "64",
        "--progress",
    ]
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "v: 250 records" in cap.out and "build: 250/250 (100%" in cap.err
    col = knnkit.Store(store).get_collection("v")
    np.testing.assert_array_equal(col.get(["0", "249"], include=("vectors",)).vectors, x[[0, 249]])
    np.save(tmp_path / "q.npy", x[[7, 200]])
    assert (
        main(
            [
                "query",
                "--path",
                store,
                "--collection",
                "v",
                "--vectors",
                str(tmp_path / "q.npy"),
                "-k",
                "3",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ids"][0] for r in rows] == ["7", "200"] and len(rows[0]["distances"]) == 3
    assert (
        main(
            [
                "query",
                "--path",
                store,
                "--collection",
                "v",
                "--vector",
                "[0,0,0,0,0,0]",
                "--where",
                '{"nope": 1}',
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["ids"] == []
    assert main(["query", "--path", store, "--collection", "missing", "--vector", "[0]"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_build_an_index_file(tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((120, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "ix.knn"
    assert (
        main(["build", str(tmp_path / "x.npy"), "--index-file", str(out), "--index", "flat"]) == 0
    )
    ix = knnkit.load(out)
    assert ix.ntotal == 120 and ix.search(x[:1], 1).ids[0][0] == 0
    assert main(["build", str(tmp_path / "nope.npy"), "--index-file", str(out)]) == 2


def test_build_from_parquet(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow", reason="parquet input needs pyarrow")
    import pyarrow.parquet as pq

    x = np.random.default_rng(2).standard_normal((30, 3)).astype(np.float32)
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(30)],
            "vector": x.tolist(),
            "doc": [f"doc {i}" for i in range(30)],
            "year": list(range(30)),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    store = str(tmp_path / "db")
    assert (
        main(
            [
                "build",
                str(tmp_path / "t.parquet"),
                "--path",
                store,
                "--collection",
                "p",
                "--document-column",
                "doc",
                "--metadata-columns",
                "year",
            ]
        )
        == 0
    )
    g = knnkit.Store(store).get_collection("p").get(["r3"], include=("metadata", "documents"))
    assert g.metadata == [{"year": 3}] and g.documents == ["doc 3"]


@needs_server
def test_build_and_query_through_a_server(tmp_path, capsys):
    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with Server(tmp_path / "db") as s:
        assert main(["build", str(tmp_path / "x.npy"), "--url", s.url, "--collection", "v"]) == 0
        assert "v: 50 records" in capsys.readouterr().out
        assert (
            main(
                [
                    "query",
                    "--url",
                    s.url,
                    "--collection",
                    "v",
                    "--vector",
                    json.dumps(x[9].tolist()),
                    "-k",
                    "1",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["ids"] == ["9"]


@needs_server
@pytest.mark.skipif(shutil.which("openssl") is None, reason="TLS test needs the openssl command")
def test_serve_over_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    s = Server(tmp_path / "db", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    s.url = s.url.replace("http://", "https://")
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(cert))
    orig = urllib.request.urlopen
    try:
        urllib.request.urlopen = lambda url, timeout=None: orig(url, timeout=timeout, context=ctx)
        s.start()
    finally:
        urllib.request.urlopen = orig
    try:
        with knnkit.Client(s.url, verify=str(cert)) as c:
            c.create_collection("t", dim=2).add(["a"], [[1, 0]])
            assert c.get_collection("t").query([[1, 0]], k=1).ids == [["a"]]
        with knnkit.Client(s.url) as c, pytest.raises(ssl.SSLError):
            c.list_collections()  # a self-signed certificate is refused by default
    finally:
        s.stop()
