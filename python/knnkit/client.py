"""``knnkit.Client``: a store served by ``knnkit serve``, with the embedded store's API.

>>> client = knnkit.Client("http://127.0.0.1:8000", api_key="kk_...")      # doctest: +SKIP
>>> col = client.get_or_create_collection("docs", dim=384)                  # doctest: +SKIP
>>> col.add(ids, vectors=X, metadata=meta); col.query(Q, k=10, where={...}) # doctest: +SKIP

Collections have the methods of :class:`knnkit.store.Collection` and return the same results
(:class:`knnkit.store.Result`; ``vectors`` as float32 arrays). Errors the server reports for bad
input come back as the exception the store raises (``ValueError``, ``TypeError``, with the
store's message); a missing or refused key is a :class:`PermissionError`
(:class:`AuthenticationError`), a body or batch over the server's limits a :class:`ValueError`
(:class:`PayloadTooLargeError`). Vectors travel as float32 bytes (the server's binary frame),
the rest as JSON. Only the standard library speaks HTTP (``http.client``, one kept-alive
connection per thread), so the client needs no extra dependency.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from knnkit._validation import as_matrix
from knnkit.errors import DimensionMismatchError
from knnkit.store import GET_FIELDS, Result, _include

__all__ = [
    "AuthenticationError",
    "Client",
    "ClientError",
    "PayloadTooLargeError",
    "RemoteCollection",
]

API = "/api/v1"


class ClientError(OSError):
    """The server answered with an error that is not a store error (status in ``.status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class AuthenticationError(PermissionError):
    """No API key, an unknown one (401), or one without the role or collection (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PayloadTooLargeError(ValueError):
    """A request over the server's body or batch limits (413): send smaller batches."""


_RAISE = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
    "NotImplementedError": NotImplementedError,
    "OverflowError": OverflowError,
    "TimeoutError": TimeoutError,
    "DimensionMismatchError": DimensionMismatchError,
    "ValidationError": TypeError,
}


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    raise TypeError(f"expected JSON-compatible values, got {type(o).__name__}")


class Client:
    """A connection to ``knnkit serve`` at ``url`` (``http://`` or ``https://``).

    Parameters
    ----------
    url : str
        The server's base URL, e.g. ``"http://127.0.0.1:8000"``.
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>``.
    timeout : float
        Seconds to wait for each answer.
    verify : bool or str
        For ``https``: check the server's certificate (True), not (False), or against this CA
        file.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        verify: bool | str = True,
    ) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"url: expected http://host:port or https://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self._timeout = float(timeout)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            if verify is False:
                self._ssl = ssl._create_unverified_context()
            elif isinstance(verify, str):
                self._ssl = ssl.create_default_context(cafile=verify)
            else:
                self._ssl = ssl.create_default_context()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- HTTP ----------------------------------------------------------------------------------
    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None or fresh:
            if c is not None:
                c.close()
            if self._https:
                c = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._ssl
                )
            else:
                c = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = c
            self._local.used = False
        return c

    def close(self) -> None:
        """Closes this thread's connection (a later call opens a new one)."""
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        vectors: np.ndarray | None = None,
        raw: bool = False,
    ) -> Any:
        headers = dict(self._headers)
        data: bytes | None = None
        if vectors is not None:
            header = dict(body or {})
            header["shape"] = [int(vectors.shape[0]), int(vectors.shape[1])]
            h = json.dumps(header, default=_default, allow_nan=False).encode()
            data = struct.pack("<I", len(h)) + h + np.ascontiguousarray(vectors, "<f4").tobytes()
            headers["Content-Type"] = "application/octet-stream"
        elif body is not None:
            try:
                data = json.dumps(body, default=_default, allow_nan=False).encode()
            except ValueError as e:
                raise ValueError(f"expected finite numbers: {e}") from None
            headers["Content-Type"] = "application/json"
        url = self._prefix + path
        for attempt in range(2):
            conn = self._conn(fresh=attempt > 0)
            reused = getattr(self._local, "used", False)
            try:
                conn.request(method, url, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server had closed: the request never reached
                # it, so it is sent once more on a new connection.
                conn.close()
                self._local.conn = None
                if reused and attempt == 0:
                    continue
                raise
            self._local.used = True
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                self._local.conn = None
            break
        if resp.status >= 400:
            self._raise(resp.status, payload)
        if raw:
            return payload
        return json.loads(payload) if payload else None

    @staticmethod
    def _raise(status: int, payload: bytes) -> None:
        try:
            err = json.loads(payload)
            message, kind = str(err.get("detail")), str(err.get("type"))
        except (ValueError, AttributeError):
            message, kind = payload[:200].decode("utf-8", "replace"), ""
        if status in (401, 403):
            raise AuthenticationError(status, message)
        if status == 413:
            raise PayloadTooLargeError(message)
        if status < 500 or kind == "TimeoutError":
            exc = _RAISE.get(kind)
            if exc is not None:
                raise exc(message)
        raise ClientError(status, message)

    # -- store API -----------------------------------------------------------------------------
    def _collection(
        self,
        get_or_create: bool | None,
        name: str,
        dim: int | None,
        metric: str | None,
        index: str | None,
        embedder: Any,
        params: dict[str, Any],
    ) -> RemoteCollection:
        if not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
            raise TypeError(f"dim: expected an int, got {dim!r}")
        if embedder is not None and not isinstance(embedder, str):
            name_of = getattr(embedder, "name", None)
            if not isinstance(name_of, str):
                raise TypeError(
                    "embedder: the server embeds with knnkit's built-in embedders only: pass "
                    "its name (e.g. 'all-MiniLM-L6-v2'), or embed here and pass vectors="
                )
            embedder = name_of
        body = {
            "name": name,
            "dim": None if dim is None else int(dim),
            "metric": metric,
            "index": index,
            "embedder": embedder,
            "params": params,
        }
        if get_or_create is None:  # get: what is given must match
            info = self._request("GET", f"{API}/collections/{_q(name)}")
            for field, want in (("dim", dim), ("metric", metric), ("index", index)):
                if want is not None and info[field] != want:
                    # the store's check and message, through get_or_create on the server
                    body["get_or_create"] = True
                    info = self._request("POST", f"{API}/collections", body)
                    break
            if params:
                body["get_or_create"] = True
                info = self._request("POST", f"{API}/collections", body)
        else:
            body["get_or_create"] = get_or_create
            info = self._request("POST", f"{API}/collections", body)
        return RemoteCollection(self, info)

    def create_collection(
        self,
        name: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        embedder: Any = None,
        **params: Any,
    ) -> RemoteCollection:
        """Creates the collection ``name`` (see :meth:`knnkit.Store.create_collection`)."""
        return self._collection(False, name, dim, metric, index, embedder, params)

    def get_collection(
        self,
        name: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        embedder: Any = None,
        **params: Any,
    ) -> RemoteCollection:
        """The existing collection ``name``; what is given must match it (``ValueError``)."""
        return self._collection(None, name, dim, metric, index, embedder, params)

    def get_or_create_collection(
        self,
        name: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        embedder: Any = None,
        **params: Any,
    ) -> RemoteCollection:
        """The collection ``name``, created if missing."""
        return self._collection(True, name, dim, metric, index, embedder, params)

    def list_collections(self) -> list[str]:
        """The names of the collections (those this key may see), sorted."""
        return [c["name"] for c in self._request("GET", f"{API}/collections")["collections"]]

    def delete_collection(self, name: str) -> None:
        """Deletes a collection, its records and its snapshot."""
        self._request("DELETE", f"{API}/collections/{_q(name)}")

    def backup(self, path: str | os.PathLike[str]) -> None:
        """Copies the server's database into the local directory ``path`` (created; it must not
        hold a store): open it with ``knnkit.Store(path)``. Needs an admin key for every
        collection."""
        path = os.fspath(path)
        target = os.path.join(path, "store.sqlite3")
        if os.path.exists(target):
            raise ValueError(
                f"invalid path: expected a directory without a store, got {path}, which holds one"
            )
        data = self._request("POST", f"{API}/backup", raw=True)
        os.makedirs(path, exist_ok=True)
        tmp = target + ".part"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def healthy(self) -> bool:
        """Whether the server answers ``/readyz``."""
        try:
            return self._request("GET", "/readyz")["status"] == "ready"
        except (OSError, ValueError):
            return False


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class RemoteCollection:
    """A collection of a :class:`Client`'s server: the methods of
    :class:`knnkit.store.Collection`."""

    def __init__(self, client: Client, info: Mapping[str, Any]) -> None:
        self._client = client
        self.name: str = info["name"]
        self.dim: int = info["dim"]
        self.metric: str = info["metric"]
        self.index: str = info["index"]
        self.params: dict[str, Any] = dict(info["params"])
        self.embedder: Any = self.params.get("embedder")
        self._path = f"{API}/collections/{_q(self.name)}"

    def __repr__(self) -> str:
        return (
            f"RemoteCollection({self.name!r}, dim={self.dim}, metric={self.metric!r}, "
            f"index={self.index!r})"
        )

    def _vectors(self, vectors: Any) -> np.ndarray | None:
        if vectors is None:
            return None
        return as_matrix(vectors, "vectors", np.dtype(np.float32), self.dim, False)

    def _write(
        self, method: str, ids: Any, vectors: Any, metadata: Any, documents: Any, texts: Any
    ):
        if vectors is not None and texts is not None:
            raise ValueError("texts: expected either vectors= or texts= to embed, got both")
        body = {"ids": ids, "metadata": metadata, "documents": documents, "texts": texts}
        body = {k: v for k, v in body.items() if v is not None}
        self._client._request("POST", f"{self._path}/{method}", body, self._vectors(vectors))

    def add(
        self,
        ids: str | Sequence[str],
        vectors: Any = None,
        metadata: Any = None,
        documents: Any = None,
        *,
        texts: Any = None,
    ) -> None:
        """Adds records (see :meth:`knnkit.store.Collection.add`)."""
        self._write("add", ids, vectors, metadata, documents, texts)

    def upsert(
        self,
        ids: str | Sequence[str],
        vectors: Any = None,
        metadata: Any = None,
        documents: Any = None,
        *,
        texts: Any = None,
    ) -> None:
        """Adds new records and replaces existing ones."""
        self._write("upsert", ids, vectors, metadata, documents, texts)

    def update(
        self,
        ids: str | Sequence[str],
        vectors: Any = None,
        metadata: Any = None,
        documents: Any = None,
        *,
        texts: Any = None,
    ) -> None:
        """Replaces the given fields of existing records."""
        self._write("update", ids, vectors, metadata, documents, texts)

    def delete(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        *,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        """Deletes records; returns how many were deleted."""
        body = {"ids": ids, "where": where, "where_document": where_document}
        return int(self._client._request("POST", f"{self._path}/delete", body)["deleted"])

    def count(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        """Number of records (that ``where`` and ``where_document`` match)."""
        body = {"where": where, "where_document": where_document}
        return int(self._client._request("POST", f"{self._path}/count", body)["count"])

    def __len__(self) -> int:
        return self.count()

    def get(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        include: Iterable[str] = ("metadata", "documents"),
        *,
        where_document: Mapping[str, Any] | None = None,
    ) -> Result:
        """Records by id or filter (see :meth:`knnkit.store.Collection.get`)."""
        chosen = _include(include, GET_FIELDS)
        body = {
            "ids": ids,
            "where": where,
            "limit": limit,
            "offset": offset,
            "include": sorted(chosen),
            "where_document": where_document,
        }
        out = self._client._request("POST", f"{self._path}/get", body)
        if "vectors" in out:
            out["vectors"] = np.asarray(out["vectors"], dtype=np.float32).reshape(-1, self.dim)
        return Result(out)

    def query(
        self,
        vectors: Any = None,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        include: Iterable[str] = ("distances", "metadata", "documents"),
        *,
        texts: str | Sequence[str] | None = None,
        where_document: Mapping[str, Any] | None = None,
        mode: str = "vector",
    ) -> Result:
        """The best ``k`` records for each query (see :meth:`knnkit.store.Collection.query`)."""
        if isinstance(include, str):
            include = [include]
        body = {
            "k": k,
            "where": where,
            "include": list(include),
            "texts": texts,
            "where_document": where_document,
            "mode": mode,
        }
        q = self._vectors(vectors) if mode != "text" else None
        if mode == "text" and vectors is not None:
            body["vectors"] = np.asarray(vectors).tolist()
        out = self._client._request("POST", f"{self._path}/query", body, q)
        for f in ("distances", "scores"):
            if f in out:
                out[f] = [[float("nan") if x is None else x for x in row] for row in out[f]]
        return Result(out)

    def snapshot(self) -> str:
        raise NotImplementedError("snapshot: the server writes its own snapshots")
