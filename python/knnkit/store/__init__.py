"""``knnkit.Store``: an embedded vector database (a directory; SQLite inside is the truth).

A store holds named collections of records: a str id, a float32 vector, optional metadata (a
dict of str, int, float, bool and lists of those) and an optional document (str). Writes are
all-or-nothing and durable when they return; queries return exactly ``min(k, matches)``
results; other processes see every committed write on their next call. The index of each
collection (exact ``"flat"`` or approximate ``"hnsw"``) is derived from SQLite: a snapshot
file that is missing or damaged is rebuilt, never an error. The design is argued in
``crates/knnkit-core/src/db/mod.rs`` and in the user guide ("Store").

>>> import tempfile, numpy as np, knnkit
>>> with tempfile.TemporaryDirectory() as d:
...     db = knnkit.Store(d)
...     col = db.get_or_create_collection("docs", dim=2, metric="euclidean", index="flat")
...     col.add(["a", "b"], vectors=[[0, 0], [1, 1]], metadata=[{"year": 2020}, {"year": 2024}])
...     res = col.query([[0.9, 0.9]], k=2, where={"year": {"$gte": 2021}})
...     print(res.ids, len(col))
[['b']] 2

Documents are also searched by text: ``query(texts=..., mode="text")`` ranks records by BM25
(SQLite FTS5), ``mode="hybrid"`` fuses that with the vector search by reciprocal rank, and
``where_document={"$contains": "..."}`` filters any read by substring. With an embedder
(``knnkit.embed``: the built-in ``MiniLM()`` or any callable), the store embeds for you:
``add(ids, documents=[...])`` without vectors and ``query(texts=[...])``.

Not yet here (later versions of the store): IVF collections.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from knnkit import _core, embed
from knnkit._validation import as_matrix

__all__ = ["Collection", "Result", "Store"]

_LATER = "arrives in a later version of knnkit's store"
GET_FIELDS = ("metadata", "documents", "vectors")
QUERY_FIELDS = ("distances", "scores", "metadata", "documents")
MODES = ("vector", "text", "hybrid")


class Result(dict):  # type: ignore[type-arg]
    """The answer of :meth:`Collection.get` or :meth:`Collection.query`: a dict whose entries
    are also attributes (``res["ids"]`` or ``res.ids``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{name!r}: this result holds {sorted(self)} (ask for more with include=)"
            ) from None


def _not_yet(**given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise NotImplementedError(f"{name}= {_LATER}")


def _include(include: Iterable[str], allowed: tuple[str, ...]) -> set[str]:
    if isinstance(include, str):
        include = (include,)
    chosen = set(include)
    unknown = chosen - set(allowed)
    if unknown:
        raise ValueError(f"include: expected some of {allowed}, got {sorted(unknown)}")
    return chosen


def _ids(ids: Any) -> list[str]:
    if isinstance(ids, str):
        return [ids]
    if isinstance(ids, (bytes, Mapping)) or not isinstance(ids, Iterable):
        raise TypeError(f"ids: expected a str or a list of str, got {type(ids).__name__}")
    return list(ids)


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, Mapping)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts: expected a str or a list of str, got {type(texts).__name__}")
    return list(texts)


def _per_record(value: Any, single: bool) -> Any:
    """One entry per id; a lone dict/str is accepted for a single id."""
    if value is None:
        return None
    if single and isinstance(value, (Mapping, str)):
        return [value]
    return value


class Collection:
    """A named set of records in a :class:`Store`. Get one from
    :meth:`Store.get_or_create_collection` (or ``create_collection``/``get_collection``).

    Attributes ``name``, ``dim``, ``metric``, ``index`` and ``params`` say what it is;
    ``embedder`` is what embeds its texts (None when it has none: pass vectors)."""

    def __init__(self, native: Any, store: Store, embedder: Any = None) -> None:
        self._native = native
        self._store = store
        info = native.info()
        self.name: str = info["name"]
        self.dim: int = info["dim"]
        self.metric: str = info["metric"]
        self.index: str = info["index"]
        self.params: dict[str, Any] = json.loads(info["params"])
        # The embedder given, or the built-in one the collection was created with.
        self.embedder: Any = (
            embedder if embedder is not None else embed.builtin(self.params.get("embedder"))
        )

    def _embed(self, texts: Any, what: str) -> np.ndarray:
        """``texts`` embedded by the collection's embedder: float32 ``(n, dim)``."""
        if self.embedder is None:
            made_with = self.params.get("embedder")
            if made_with is None:
                raise ValueError(
                    f"{what}: collection {self.name!r} has no embedder to make vectors from "
                    f"text: pass vectors=, or open it with embedder= (e.g. "
                    f"knnkit.embed.MiniLM())"
                )
            raise ValueError(
                f"{what}: collection {self.name!r} was created with the embedder "
                f"{made_with!r}, which is not built into knnkit: open it with "
                f"get_collection({self.name!r}, embedder=...) passing that embedder"
            )
        out = self.embedder(embed.texts_of(texts, what))
        return as_matrix(out, f"{what} (embedded)", np.dtype(np.float32), self.dim, False)

    def _query_vectors(self, vectors: Any, texts: Any) -> Any:
        """The query vectors: ``vectors`` as given, else ``texts`` embedded."""
        if vectors is not None:
            return vectors
        if texts is None:
            raise ValueError(
                "vectors: expected query vectors of shape (n, dim) or texts= to embed, got neither"
            )
        return self._embed(texts, "texts")

    def __repr__(self) -> str:
        return (
            f"Collection({self.name!r}, dim={self.dim}, metric={self.metric!r}, "
            f"index={self.index!r})"
        )

    def _write(
        self,
        method: str,
        ids: Any,
        vectors: Any,
        metadata: Any,
        documents: Any,
        texts: Any,
    ) -> None:
        ids = _ids(ids)
        single = len(ids) == 1
        documents = _per_record(documents, single)
        if vectors is None:
            # Without vectors, the texts (or else the documents) are embedded; an update
            # re-embeds new documents only when the collection has an embedder.
            source, what = (texts, "texts") if texts is not None else (documents, "documents")
            if source is not None and (
                method != "update" or texts is not None or self.embedder is not None
            ):
                vectors = self._embed(_per_record(source, single), what)
        elif texts is not None:
            raise ValueError("texts: expected either vectors= or texts= to embed, got both")
        if vectors is not None:
            vectors = as_matrix(vectors, "vectors", np.dtype(np.float32), self.dim, False)
        getattr(self._native, method)(ids, vectors, _per_record(metadata, single), documents)

    def add(
        self,
        ids: str | Sequence[str],
        vectors: Any = None,
        metadata: Sequence[Mapping[str, Any] | None] | Mapping[str, Any] | None = None,
        documents: Sequence[str | None] | str | None = None,
        *,
        texts: Any = None,
    ) -> None:
        """Adds records: ``ids[i]`` with ``vectors[i]`` (shape ``(n, dim)``), ``metadata[i]``
        and ``documents[i]``. Every id must be new (``ValueError`` naming the existing ones,
        and nothing is written); durable when it returns. Without ``vectors``, the
        collection's embedder embeds ``texts`` (when given: text embedded but not stored) or
        else the documents."""
        self._write("add", ids, vectors, metadata, documents, texts)

    def upsert(
        self,
        ids: str | Sequence[str],
        vectors: Any = None,
        metadata: Sequence[Mapping[str, Any] | None] | Mapping[str, Any] | None = None,
        documents: Sequence[str | None] | str | None = None,
        *,
        texts: Any = None,
    ) -> None:
        """Adds new records and replaces existing ones' vectors, and their metadata and
        documents where given (``None`` for the whole argument keeps them)."""
        self._write("upsert", ids, vectors, metadata, documents, texts)

    def update(
        self,
        ids: str | Sequence[str],
        vectors: Any = None,
        metadata: Sequence[Mapping[str, Any] | None] | Mapping[str, Any] | None = None,
        documents: Sequence[str | None] | str | None = None,
        *,
        texts: Any = None,
    ) -> None:
        """Replaces the given fields of existing records (every id must exist; a ``None``
        entry in a list clears that record's field, ``None`` for the argument keeps them)."""
        self._write("update", ids, vectors, metadata, documents, texts)

    def delete(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        *,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        """Deletes the records with these ids (unknown ones are skipped) that ``where`` and
        ``where_document`` match (at least one of the three); returns how many were
        deleted."""
        return int(self._native.delete(None if ids is None else _ids(ids), where, where_document))

    def count(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        """Number of records (that ``where`` and ``where_document`` match)."""
        return int(self._native.count(where, where_document))

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
        """Records by id (in the order asked; unknown ids are skipped) or all of them (in
        insertion order), those ``where`` and ``where_document`` match, from ``offset``, at
        most ``limit``.

        Returns a :class:`Result` with ``ids`` and the fields of ``include`` (``"metadata"``,
        ``"documents"``, ``"vectors"``: an ``(n, dim)`` float32 array)."""
        chosen = _include(include, GET_FIELDS)
        if limit is not None and (isinstance(limit, bool) or int(limit) < 0):
            raise ValueError(f"limit: expected None or a non-negative int, got {limit!r}")
        if isinstance(offset, bool) or int(offset) < 0:
            raise ValueError(f"offset: expected a non-negative int, got {offset!r}")
        out = self._native.get(
            None if ids is None else _ids(ids),
            where,
            None if limit is None else int(limit),
            int(offset),
            "metadata" in chosen,
            "documents" in chosen,
            "vectors" in chosen,
            where_document,
        )
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
        """The best ``k`` records for each query among those ``where`` and ``where_document``
        match, best first, one list per query row.

        ``mode="vector"`` (default): the nearest to each of ``vectors`` (shape ``(n, dim)``;
        or ``texts`` embedded by the collection's embedder), exactly ``min(k, matches)`` per query, with their ``distances`` (in the metric's
        units). ``mode="text"``: records ranked by BM25 (SQLite FTS5: ``unicode61`` tokens,
        case and diacritics ignored, k1=1.2, b=0.75) of each of ``texts`` (a str or a list:
        one result row per text) against their documents, with their ``scores`` (higher is
        better; each distinct word of a text counts once, and a text may hold at most 128
        distinct words); only records whose document holds a word of the text are ranked, so
        a row holds *at most* ``k`` (none for a text without words). The text is never read
        as FTS5 syntax: its words are looked up as words. ``mode="hybrid"``: both rankings
        (``vectors``, or ``texts`` embedded, and ``texts`` row by row), each taken to depth ``2k + 60`` and fused by
        reciprocal rank (``scores``: ``sum(1 / (60 + rank))`` over the two lists), exactly
        ``min(k, matches)`` per query.

        ``where_document``: ``{"$contains": "text"}`` (the document contains this exact,
        case-sensitive substring), ``{"$not_contains": "text"}`` (records without a
        document match it), and ``{"$and": [...]}`` / ``{"$or": [...]}`` of those.

        Returns a :class:`Result` with ``ids`` and the fields of ``include``: ``"distances"``
        (or its alias ``"scores"``: the ranking values, named ``distances`` in vector mode and
        ``scores`` in the others), ``"metadata"``, ``"documents"``."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        chosen = _include(include, QUERY_FIELDS)
        if texts is not None:
            texts = _texts(texts)
        if mode == "text":
            if texts is None:
                raise ValueError("text mode needs texts= (one query string per result row)")
            if vectors is not None:
                raise ValueError(
                    "text mode ranks by texts only: pass vectors=None, or mode='hybrid' to use both"
                )
        elif vectors is not None and texts is not None and mode == "vector":
            raise ValueError(
                "vectors= and texts= both given in vector mode: pass one of them (texts are "
                "embedded by the collection's embedder), or mode='hybrid' to rank by both"
            )
        elif mode == "hybrid" and texts is None:
            raise ValueError("hybrid mode needs texts= (one query string per vector)")
        q = None
        if mode != "text":
            # Vectors as given, else the texts embedded (an error without an embedder).
            q = as_matrix(
                self._query_vectors(vectors, texts),
                "vectors",
                np.dtype(np.float32),
                self.dim,
                False,
            )
        if mode == "vector":
            texts = None
        out = self._native.query(
            q,
            int(k),
            where,
            "metadata" in chosen,
            "documents" in chosen,
            texts,
            where_document,
            mode,
        )
        if not chosen & {"distances", "scores"}:
            out.pop("distances", None)
            out.pop("scores", None)
        return Result(out)

    def snapshot(self) -> str:
        """Writes the index snapshot now (the store also does after enough writes); a later
        open then replays only what came after it. Returns its path."""
        return os.fspath(self._native.snapshot())


class Store:
    """An embedded vector database in the directory ``path`` (created if missing).

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory: ``store.sqlite3`` (the truth) and index snapshots.
    durability : {"full", "normal"}
        ``"full"``: every write is on disk when it returns. ``"normal"``: safe against a crash
        of the process, but a power cut or OS crash may roll back the last writes (those since
        SQLite's last WAL checkpoint); faster writes.
    timeout : float
        Seconds a writer waits for another process's write to finish before ``TimeoutError``.
    snapshot_every : int
        Write a collection's index snapshot after this many changed records (and at least a
        quarter of the collection); 0: only on :meth:`Collection.snapshot`.

    A store must not be used across ``os.fork()``: open it again in the child.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "full",
        timeout: float = 5.0,
        snapshot_every: int = 50_000,
    ) -> None:
        if isinstance(snapshot_every, bool) or int(snapshot_every) < 0:
            raise ValueError(f"snapshot_every: expected a non-negative int, got {snapshot_every!r}")
        self._native = _core.Db(os.fspath(path), durability, float(timeout), int(snapshot_every))
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def _collection(
        self,
        mode: str,
        name: str,
        dim: int | None,
        metric: str | None,
        index: str | None,
        embedder: Any,
        params: dict[str, Any],
    ) -> Collection:
        if not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer))):
            raise TypeError(f"dim: expected an int, got {dim!r}")
        if embedder is not None:
            embedder, dim, params = self._with_embedder(name, embedder, dim, params)
        native = self._native.collection(
            name, mode, None if dim is None else int(dim), metric, index, params or None
        )
        return Collection(native, self, embedder)

    def _with_embedder(
        self, name: str, embedder: Any, dim: int | None, params: dict[str, Any]
    ) -> tuple[Any, int, dict[str, Any]]:
        """The embedder checked, the dimension it gives, and the parameters naming it (the
        core records the name with a new collection and checks it against an existing one)."""
        if "embedder" in params:
            raise TypeError("embedder: pass it once, as embedder=")
        embedder = embed.as_embedder(embedder)
        if dim is not None and int(dim) != embedder.dim:
            raise ValueError(
                f"dim: expected {embedder.dim}, the dimension of the embedder "
                f"{embedder.name!r}'s vectors, got {dim}"
            )
        existing = [c for c in self._native.list_collections() if c["name"] == name]
        if existing and existing[0]["dim"] != embedder.dim:
            raise ValueError(
                f"embedder: {embedder.name!r} makes vectors of dimension {embedder.dim}, but "
                f"collection {name!r} holds vectors of dimension {existing[0]['dim']}"
            )
        return embedder, embedder.dim, {**params, "embedder": embedder.name}

    def create_collection(
        self,
        name: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        embedder: Any = None,
        **params: Any,
    ) -> Collection:
        """Creates the collection ``name`` (an error if it exists). ``metric`` defaults to
        ``"cosine"``, ``index`` to ``"hnsw"`` (or ``"flat"``: exact); ``params`` are the HNSW
        parameters ``m``, ``ef_construction``, ``ef_search``, ``codes``, ``seed``.

        ``embedder`` (see ``knnkit.embed``: ``MiniLM()`` or any callable from a list of str
        to an ``(n, dim)`` array) embeds documents added without vectors and ``texts=``
        queries; ``dim`` is then the embedder's. The collection records the embedder's name:
        reopening it needs no ``embedder=`` when that is a built-in one, and an embedder of
        another name is a ``ValueError``."""
        return self._collection("create", name, dim, metric, index, embedder, params)

    def get_collection(
        self,
        name: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        embedder: Any = None,
        **params: Any,
    ) -> Collection:
        """The existing collection ``name``; what is given must match it (``ValueError``)."""
        return self._collection("get", name, dim, metric, index, embedder, params)

    def get_or_create_collection(
        self,
        name: str,
        dim: int | None = None,
        metric: str | None = None,
        index: str | None = None,
        embedder: Any = None,
        **params: Any,
    ) -> Collection:
        """The collection ``name``, created if missing (see :meth:`create_collection`); an
        existing one must match what is given (``ValueError`` naming the difference)."""
        return self._collection("get_or_create", name, dim, metric, index, embedder, params)

    def list_collections(self) -> list[str]:
        """The names of the collections, sorted."""
        return [c["name"] for c in self._native.list_collections()]

    def delete_collection(self, name: str) -> None:
        """Deletes a collection, its records and its snapshot."""
        self._native.delete_collection(name)

    def backup(self, path: str | os.PathLike[str]) -> None:
        """Copies the store's database into the directory ``path`` (created; it must not hold
        a store) with SQLite's online backup: a consistent copy while writers run. Indexes are
        rebuilt when the copy is opened."""
        self._native.backup(os.fspath(path))
