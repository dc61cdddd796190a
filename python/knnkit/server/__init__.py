"""``knnkit serve``: the embedded store (:class:`knnkit.Store`) behind a REST API.

Needs the ``server`` extra (``pip install knnkit[server]``: FastAPI, uvicorn, prometheus-client);
``import knnkit`` never imports it. :func:`create_app` builds the ASGI application;
``knnkit serve`` (``knnkit.cli``) runs it under uvicorn, with one store opened per worker
process (the store is safe across processes: one writer at a time through SQLite's lock, and
readers see every commit on their next call).

Routes (all JSON unless said; the OpenAPI document is at ``/openapi.json``, browsable at
``/docs``)::

    GET    /api/v1/collections                   list (those the key may see)       read
    POST   /api/v1/collections                   create (get_or_create: true)       admin
    GET    /api/v1/collections/{name}            describe (with its count)          read
    DELETE /api/v1/collections/{name}            delete                             admin
    POST   /api/v1/collections/{name}/add        add records                        write
    POST   /api/v1/collections/{name}/upsert     add or replace records             write
    POST   /api/v1/collections/{name}/update     change records                     write
    POST   /api/v1/collections/{name}/delete     delete by ids / where              write
    POST   /api/v1/collections/{name}/get        records by ids / where             read
    POST   /api/v1/collections/{name}/query      nearest / BM25 / hybrid            read
    GET|POST /api/v1/collections/{name}/count    count (where)                      read
    POST   /api/v1/backup                        the store's database, streamed     admin, ["*"]
    GET    /healthz  /readyz                     liveness, readiness (no key)
    GET    /metrics                              Prometheus text format             admin
    GET    /                                     the page (HTML + JS; asks for a key)

Bulk vectors: ``add``, ``upsert``, ``update`` and ``query`` also take
``Content-Type: application/octet-stream``: a little-endian ``uint32`` length ``L``, then ``L``
bytes of UTF-8 JSON (the request's other fields, plus ``"shape": [n, dim]``), then ``n * dim``
float32 little-endian values, row-major. The JSON part stays small (ids, metadata), so ingest
is bound by the store, not by parsing numbers. (Arrow IPC is not accepted: this frame needs no
dependency on either side.)

Errors: ``{"detail": message, "type": exception name}``. The store's ``ValueError`` and
``TypeError`` are 400 (404 for a collection or record that does not exist, 409 for one that
already does), an invalid body 422, a body over ``max_body_bytes`` or a batch over
``max_batch`` 413, a writer that waited past the store's timeout 503. Messages never hold API
keys or the store's path.
"""

import json
import math
import os
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Settings", "create_app"]

API = "/api/v1"
DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_MAX_BATCH = 50_000
_PAGE = Path(__file__).with_name("page.html")


@dataclass
class Settings:
    """What :func:`create_app` serves and how (``knnkit serve``'s options)."""

    path: str
    keys_file: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_batch: int = DEFAULT_MAX_BATCH
    durability: str = "full"
    timeout: float = 5.0

    def to_env(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_env(cls, text: str) -> "Settings":
        return cls(**json.loads(text))


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "Error", headers=None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


# Store messages that mean "does not exist" (404) or "already exists" (409).
_NOT_FOUND = ("which does not exist", "which was deleted", "expected ids of records in")
_CONFLICT = ("which exists", "expected ids not yet in", "(what the call asked for)")


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, TimeoutError):
        return 503
    if isinstance(exc, KeyError):
        return 404
    msg = str(exc)
    if any(s in msg for s in _NOT_FOUND):
        return 404
    if any(s in msg for s in _CONFLICT):
        return 409
    return 400


def _frame(body: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The JSON header and the ``(n, dim)`` float32 vectors of a binary request body."""
    if len(body) < 4:
        raise ApiError(400, "binary body: expected a uint32 header length first", "ValueError")
    (hlen,) = struct.unpack_from("<I", body, 0)
    if 4 + hlen > len(body):
        raise ApiError(400, "binary body: header length runs past the body", "ValueError")
    try:
        header = json.loads(body[4 : 4 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "binary body: the header is not UTF-8 JSON", "ValueError") from None
    if not isinstance(header, dict):
        raise ApiError(400, "binary body: the header must be a JSON object", "ValueError")
    shape = header.pop("shape", None)
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise ApiError(
            400, "binary body: header 'shape': expected [n, dim] of non-negative ints", "ValueError"
        )
    data = body[4 + hlen :]
    if shape[0] * shape[1] * 4 != len(data):
        raise ApiError(
            400,
            f"binary body: shape {shape} needs {shape[0] * shape[1] * 4} bytes of float32, "
            f"got {len(data)}",
            "ValueError",
        )
    vectors = np.frombuffer(data, dtype="<f4").reshape(shape[0], shape[1])
    return header, vectors


def create_app(settings: Settings) -> Any:
    """The FastAPI application serving the store at ``settings.path``."""
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import GaugeMetricFamily
    from pydantic import BaseModel, ConfigDict, ValidationError
    from starlette.background import BackgroundTask

    import knnkit
    from knnkit import embed
    from knnkit.server import auth

    store = knnkit.Store(settings.path, durability=settings.durability, timeout=settings.timeout)
    keys = auth.load_keys(settings.keys_file) if settings.keys_file else None
    max_batch = int(settings.max_batch)
    hidden = sorted(
        {os.fspath(settings.path), os.path.abspath(settings.path), os.path.realpath(settings.path)},
        key=len,
        reverse=True,
    )

    def clean(msg: str) -> str:
        for p in hidden:
            msg = msg.replace(p, "<store>")
        return re.sub(r"(/tmp|/var|/home|/root)/[^\s'\",]*", "<path>", msg)

    # -- metrics: one registry per app; several workers share files (multiprocess mode) --------
    multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry = CollectorRegistry()
    requests_total = Counter(
        "knnkit_http_requests_total",
        "HTTP requests by route, method and status",
        ["method", "route", "status"],
        registry=None if multiproc else registry,
    )
    latency = Histogram(
        "knnkit_http_request_duration_seconds",
        "HTTP request latency by route and method",
        ["method", "route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=None if multiproc else registry,
    )
    if multiproc:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)

    class SizeCollector:
        def collect(self):
            g = GaugeMetricFamily(
                "knnkit_collection_records", "Records per collection", labels=["collection"]
            )
            try:
                for name in store.list_collections():
                    try:
                        g.add_metric([name], store.get_collection(name).count())
                    except Exception:  # deleted while we counted
                        continue
            except Exception:
                pass
            yield g

    registry.register(SizeCollector())

    app = FastAPI(
        title="knnkit",
        version=knnkit.__version__,
        description="knnkit's store over HTTP: collections of vectors with metadata and "
        "documents, nearest-neighbour, BM25 and hybrid queries with filters. Send the API key "
        "as `Authorization: Bearer <key>` (or `X-API-Key`).",
    )
    app.state.store = store

    # -- middleware: body limit and metrics (plain ASGI, around everything) -------------------
    inner_app = app.build_middleware_stack

    def metrics_and_limits(asgi):
        async def wrapped(scope, receive, send):
            if scope["type"] != "http":
                return await asgi(scope, receive, send)
            start = time.perf_counter()
            status = [500]
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length")
            too_big = False
            if length is not None:
                try:
                    too_big = int(length) > settings.max_body_bytes
                except ValueError:
                    too_big = False
            seen = [0]

            async def limited_receive():
                msg = await receive()
                if msg["type"] == "http.request":
                    seen[0] += len(msg.get("body", b""))
                    if seen[0] > settings.max_body_bytes:
                        # a body without Content-Length (chunked) that grows past the limit:
                        # the route reading it answers 413 through ApiError's handler
                        raise ApiError(413, too_large_message, "PayloadTooLarge")
                return msg

            async def tracking_send(msg):
                if msg["type"] == "http.response.start":
                    status[0] = msg["status"]
                await send(msg)

            try:
                if too_big:
                    await _too_big(scope, send, status)
                else:
                    await asgi(scope, limited_receive, tracking_send)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "<unmatched>")
                method = scope.get("method", "")
                requests_total.labels(method, path, str(status[0])).inc()
                latency.labels(method, path).observe(time.perf_counter() - start)

        return wrapped

    too_large_message = (
        f"request body over this server's limit of {settings.max_body_bytes} bytes: send "
        "smaller batches"
    )

    async def _too_big(scope, send, status):
        status[0] = 413
        body = json.dumps({"detail": too_large_message, "type": "PayloadTooLarge"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def build_stack():
        return metrics_and_limits(inner_app())

    app.build_middleware_stack = build_stack  # type: ignore[method-assign]

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )

    # -- errors --------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(
            {"detail": clean(exc.message), "type": exc.kind},
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(_validation_body(exc.errors()), status_code=422)

    def _validation_body(errors) -> dict[str, Any]:
        parts = []
        for e in errors[:10]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return {"detail": "invalid request: " + "; ".join(parts), "type": "ValidationError"}

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        return JSONResponse({"detail": "internal error", "type": "InternalError"}, status_code=500)

    # -- auth ----------------------------------------------------------------------------------
    def identify(request: Request) -> Any:
        """The key presented (None without a keys file); 401 when none or unknown."""
        if keys is None:
            return None
        presented = None
        h = request.headers.get("authorization")
        if h and h[:7].lower() == "bearer ":
            presented = h[7:].strip()
        elif request.headers.get("x-api-key"):
            presented = request.headers["x-api-key"].strip()
        challenge = {"WWW-Authenticate": "Bearer"}
        if not presented:
            raise ApiError(
                401,
                "an API key is required (Authorization: Bearer <key>)",
                "AuthenticationError",
                challenge,
            )
        key = auth.find_key(keys, presented)
        if key is None:
            raise ApiError(401, "invalid API key", "AuthenticationError", challenge)
        return key

    def authorize(request: Request, role: str, collection: str | None) -> Any:
        key = identify(request)
        if key is not None and not key.allows(role, collection):
            what = f"collection {collection!r}" if collection else "the whole store"
            raise ApiError(
                403, f"this key ({key.role}) may not {role} on {what}", "PermissionError"
            )
        return key

    # -- bodies --------------------------------------------------------------------------------
    async def payload(request: Request, model: type[BaseModel]) -> tuple[Any, np.ndarray | None]:
        body = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        vectors = None
        try:
            if ctype == "application/octet-stream":
                header, vectors = _frame(body)
                if "vectors" in header:
                    raise ApiError(
                        400, "binary body: vectors go after the header, not in it", "ValueError"
                    )
                data = model.model_validate(header)
            else:
                data = model.model_validate_json(body or b"{}")
        except ValidationError as e:
            raise ApiError(422, _validation_body(e.errors())["detail"], "ValidationError") from None
        return data, vectors

    def check_batch(what: str, n: int) -> None:
        if n > max_batch:
            raise ApiError(
                413,
                f"{what}: {n} exceeds this server's batch limit of {max_batch}",
                "PayloadTooLarge",
            )

    def count_of(x: Any) -> int:
        return 1 if isinstance(x, (str, dict)) else len(x) if isinstance(x, list) else 0

    async def run(fn, *args):
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args))
        except ApiError:
            raise
        except (
            ValueError,
            TypeError,
            KeyError,
            OverflowError,
            NotImplementedError,
            TimeoutError,
            RecursionError,
        ) as e:
            status = _status_of(e)
            msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            raise ApiError(
                status,
                msg,
                type(e).__name__,
                {"Retry-After": "1"} if status == 503 else None,
            ) from None

    def collection(name: str):
        return store.get_collection(name)

    def describe(col) -> dict[str, Any]:
        return {
            "name": col.name,
            "dim": col.dim,
            "metric": col.metric,
            "index": col.index,
            "params": col.params,
            "count": col.count(),
        }

    # -- models --------------------------------------------------------------------------------
    Ids = str | list[str]
    Meta = dict[str, Any] | list[dict[str, Any] | None]
    Docs = str | list[str | None]
    Where = dict[str, Any]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class CreateCollection(Strict):
        name: str
        dim: int | None = None
        metric: str | None = None
        index: str | None = None
        embedder: str | None = None
        params: dict[str, Any] = {}
        get_or_create: bool = False

    class Write(Strict):
        ids: Ids
        vectors: list[list[float]] | None = None
        metadata: Meta | None = None
        documents: Docs | None = None
        texts: Ids | None = None

    class Delete(Strict):
        ids: Ids | None = None
        where: Where | None = None
        where_document: Where | None = None

    class Count(Strict):
        where: Where | None = None
        where_document: Where | None = None

    class Get(Strict):
        ids: Ids | None = None
        where: Where | None = None
        limit: int | None = None
        offset: int = 0
        include: list[str] = ["metadata", "documents"]
        where_document: Where | None = None

    class Query(Strict):
        vectors: list[list[float]] | None = None
        texts: Ids | None = None
        k: int = 10
        where: Where | None = None
        where_document: Where | None = None
        mode: str = "vector"
        include: list[str] = ["distances", "metadata", "documents"]

    models = {m.__name__: m for m in (CreateCollection, Write, Delete, Count, Get, Query)}

    def body_doc(model: type[BaseModel], binary: bool = False, required: bool = True):
        content = {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        }
        if binary:
            content["application/octet-stream"] = {
                "schema": {"type": "string", "format": "binary"},
                "example": "",
            }
        return {"requestBody": {"required": required, "content": content}}

    # -- routes: health, metrics, page ----------------------------------------------------------
    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/readyz", tags=["ops"], summary="Readiness: the store answers")
    async def readyz():
        try:
            await anyio.to_thread.run_sync(store.list_collections)
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics (admin)")
    async def metrics(request: Request):
        authorize(request, "admin", None)
        data = await anyio.to_thread.run_sync(generate_latest, registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(_PAGE.read_text(encoding="utf-8"))

    # -- routes: collections -------------------------------------------------------------------
    @app.get(f"{API}/collections", tags=["collections"], summary="List collections")
    async def list_collections(request: Request):
        key = identify(request)  # any valid key lists; it sees only its collections

        def work():
            out = []
            for name in store.list_collections():
                if key is not None and not key.sees(name):
                    continue
                try:
                    out.append(describe(collection(name)))
                except ValueError:  # deleted meanwhile
                    continue
            return out

        return {"collections": await run(work)}

    @app.post(
        f"{API}/collections",
        tags=["collections"],
        summary="Create a collection (or get it: get_or_create)",
        openapi_extra=body_doc(CreateCollection),
        status_code=201,
    )
    async def create_collection(request: Request):
        data, _ = await payload(request, CreateCollection)
        authorize(request, "admin", data.name)

        def work():
            emb = None
            if data.embedder is not None:
                emb = embed.builtin(data.embedder)
                if emb is None:
                    raise ValueError(
                        f"embedder: expected the name of an embedder built into knnkit "
                        f"({sorted(embed._BUILTIN)}), got {data.embedder!r}"
                    )
            mode = "get_or_create" if data.get_or_create else "create"
            existed = mode == "get_or_create" and data.name in store.list_collections()
            col = store._collection(
                mode, data.name, data.dim, data.metric, data.index, emb, dict(data.params)
            )
            return describe(col), existed

        info, existed = await run(work)
        return JSONResponse(info, status_code=200 if existed else 201)

    @app.get(f"{API}/collections/{{name}}", tags=["collections"], summary="Describe a collection")
    async def get_collection(name: str, request: Request):
        authorize(request, "read", name)
        return await run(lambda: describe(collection(name)))

    @app.delete(f"{API}/collections/{{name}}", tags=["collections"], summary="Delete a collection")
    async def delete_collection(name: str, request: Request):
        authorize(request, "admin", name)
        await run(store.delete_collection, name)
        return {"deleted": name}

    # -- routes: records -----------------------------------------------------------------------
    def write_route(method: str, summary: str):
        async def route(name: str, request: Request):
            authorize(request, "write", name)
            data, vectors = await payload(request, Write)
            if vectors is None and data.vectors is not None:
                vectors = data.vectors
            check_batch("ids", count_of(data.ids))
            if vectors is not None:
                check_batch("vectors", len(vectors))

            def work():
                col = collection(name)
                getattr(col, method)(
                    data.ids, vectors, data.metadata, data.documents, texts=data.texts
                )
                return {"written": count_of(data.ids)}

            return await run(work)

        app.post(
            f"{API}/collections/{{name}}/{method}",
            tags=["records"],
            summary=summary,
            openapi_extra=body_doc(Write, binary=True),
            name=method,
        )(route)

    write_route("add", "Add records (every id new)")
    write_route("upsert", "Add or replace records")
    write_route("update", "Change existing records")

    @app.post(
        f"{API}/collections/{{name}}/delete",
        tags=["records"],
        summary="Delete records by ids, where, where_document",
        openapi_extra=body_doc(Delete),
    )
    async def delete_records(name: str, request: Request):
        authorize(request, "write", name)
        data, _ = await payload(request, Delete)
        if data.ids is not None:
            check_batch("ids", count_of(data.ids))
        n = await run(
            lambda: collection(name).delete(
                data.ids, data.where, where_document=data.where_document
            )
        )
        return {"deleted": n}

    async def count_route(name: str, request: Request, data: Any):
        authorize(request, "read", name)
        n = await run(
            lambda: collection(name).count(data.where, where_document=data.where_document)
        )
        return {"count": n}

    @app.get(f"{API}/collections/{{name}}/count", tags=["records"], summary="Count all records")
    async def count_all(name: str, request: Request):
        return await count_route(name, request, Count())

    @app.post(
        f"{API}/collections/{{name}}/count",
        tags=["records"],
        summary="Count records that where/where_document match",
        openapi_extra=body_doc(Count),
    )
    async def count_where(name: str, request: Request):
        authorize(request, "read", name)
        data, _ = await payload(request, Count)
        return await count_route(name, request, data)

    @app.post(
        f"{API}/collections/{{name}}/get",
        tags=["records"],
        summary="Get records by ids or filters",
        openapi_extra=body_doc(Get),
    )
    async def get_records(name: str, request: Request):
        authorize(request, "read", name)
        data, _ = await payload(request, Get)
        if data.ids is not None:
            check_batch("ids", count_of(data.ids))
        if data.limit is not None and data.limit > max_batch:
            check_batch("limit", data.limit)

        def work():
            col = collection(name)
            if data.ids is None and data.limit is None:
                n = col.count(data.where, where_document=data.where_document)
                if isinstance(data.offset, int) and data.offset >= 0:
                    check_batch("records matched (pass limit=)", n - data.offset)
            res = col.get(
                data.ids,
                data.where,
                data.limit,
                data.offset,
                data.include,
                where_document=data.where_document,
            )
            out = dict(res)
            if "vectors" in out:
                out["vectors"] = np.asarray(out["vectors"]).tolist()
            return out

        return JSONResponse(await run(work))

    @app.post(
        f"{API}/collections/{{name}}/query",
        tags=["records"],
        summary="Nearest records (vector), BM25 (text) or both fused (hybrid)",
        openapi_extra=body_doc(Query, binary=True),
    )
    async def query_records(name: str, request: Request):
        authorize(request, "read", name)
        data, vectors = await payload(request, Query)
        if vectors is None and data.vectors is not None:
            vectors = data.vectors
        if vectors is not None:
            check_batch("vectors", len(vectors))
        if data.texts is not None:
            check_batch("texts", count_of(data.texts))
        if data.k > max_batch:
            check_batch("k", data.k)

        def work():
            res = collection(name).query(
                vectors,
                data.k,
                data.where,
                data.include,
                texts=data.texts,
                where_document=data.where_document,
                mode=data.mode,
            )
            out = dict(res)
            for f in ("distances", "scores"):
                if f in out:
                    out[f] = [[_finite(x) for x in row] for row in out[f]]
            return out

        return JSONResponse(await run(work))

    # -- routes: backup ------------------------------------------------------------------------
    @app.post(
        f"{API}/backup",
        tags=["store"],
        summary="A consistent copy of the store's database (SQLite file), streamed",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    async def backup(request: Request):
        authorize(request, "admin", None)
        tmp = tempfile.mkdtemp(prefix="knnkit-backup-")
        target = os.path.join(tmp, "backup")
        try:
            await run(store.backup, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return FileResponse(
            os.path.join(target, "store.sqlite3"),
            media_type="application/octet-stream",
            filename="store.sqlite3",
            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
        )

    # The request models are read by hand (JSON or the binary frame): list them in the schema.
    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, m in models.items():
            s = m.model_json_schema(ref_template="#/components/schemas/{model}")
            for dname, d in s.pop("$defs", {}).items():
                comps[dname] = d
            comps[name] = s
        schema["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        schema["security"] = [{"bearer": []}, {"apiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def app_from_env() -> Any:
    """The application for uvicorn's workers (``knnkit serve``): settings from the environment."""
    return create_app(Settings.from_env(os.environ["KNNKIT_SERVE_SETTINGS"]))
