"""The FastAPI application: the retriever's add / delete / get / search over HTTP, and the demo page.

One process holds the index and its models, loaded once at start-up; every endpoint that
touches them runs on the server's worker threads (the retriever is thread-safe), so the
event loop never blocks and requests are served concurrently. An embedded Edge index is
held by one process at a time: run several workers or replicas only on a Qdrant server.
"""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any, AsyncIterator, Callable, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid_retriever import __version__
from hybrid_retriever.config import FusionConfig, QdrantStoreConfig, RetrieverConfig
from hybrid_retriever.errors import (
    BranchFailureError,
    ConfigError,
    FilterError,
    HybridRetrieverError,
    IndexMismatchError,
    InvalidInputError,
    StoreUnavailableError,
)
from hybrid_retriever.grouping import group_depth, group_hits
from hybrid_retriever.retriever import HybridRetriever
from hybrid_retriever_server.models import (
    AddDocuments,
    AddedDocuments,
    DeleteDocuments,
    DeletedDocuments,
    DocumentOut,
    ErrorBody,
    Health,
    HitOut,
    Ready,
    SearchBatchBody,
    SearchBatchResult,
    SearchBody,
    SearchResult,
    SearchOptions,
)
from hybrid_retriever_server.guard import RequestGuard
from hybrid_retriever_server.indexing import router as indexing_router
from hybrid_retriever_server.settings import ServerSettings
from hybrid_retriever_server.writes import WriteHealth, WriteOutcomeUnknown, outcome_unknown_response

log = logging.getLogger("hybrid_retriever_server")

#: What the app serves: a retriever (the caller's to close), or a config / factory the app
#: opens at start-up and closes at shutdown.
RetrieverSource = Union[HybridRetriever, RetrieverConfig, Callable[[], HybridRetriever]]

_ERRORS = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 422: "invalid_request"}


class _AnyPath(PathConvertor):
    """Starlette's ``path`` with line breaks too, so an id holding one reaches the route and gets the
    library's clear 400 (ids may not hold control characters) rather than a bare 404."""

    regex = "[\\s\\S]*"


register_url_convertor("any", _AnyPath())


class ApiError(Exception):
    """An error answered as ``{"error": code, "detail": message}`` with ``status``."""

    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _error(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def create_app(source: RetrieverSource, settings: ServerSettings | None = None) -> FastAPI:
    """The HTTP service over ``source``: a :class:`HybridRetriever`, a :class:`RetrieverConfig` or a
    function that opens one (called once, at start-up; the app closes what it opened at shutdown)."""
    settings = settings or ServerSettings()
    owned = not isinstance(source, HybridRetriever)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(source, HybridRetriever):
            retriever = source
        elif isinstance(source, RetrieverConfig):
            retriever = await run_in_threadpool(HybridRetriever, source)
        else:
            retriever = await run_in_threadpool(source)
        try:
            await run_in_threadpool(_load_models, retriever)
            app.state.retriever = retriever
            log.info("serving %s (branches %s)", retriever.store.location, retriever.config.branch_names)
            yield
        finally:
            if owned:
                log.info("closing the index at %s", retriever.store.location)
                await run_in_threadpool(retriever.close)

    app = FastAPI(
        title="hybrid-retriever",
        version=__version__,
        description="Hybrid BM25 + dense retrieval on Qdrant; every hit carries each branch's score and rank.",
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
        docs_url=None,  # FastAPI's own page loads Swagger UI from a CDN: served from local files below
        redoc_url=None,  # ReDoc's bundle fetches its logo from its CDN, so it is left out (offline: /docs only)
    )
    app.state.settings = settings
    writes = app.state.writes = WriteHealth()
    app.add_middleware(RequestGuard, settings=settings)  # host, framing, key and size: before any body is read
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", settings.api_key_header],
        )
    _install_error_handlers(app)

    key_header = APIKeyHeader(name=settings.api_key_header, auto_error=False, description="The server's API key, when it has one.")

    async def require_key(given: Optional[str] = Depends(key_header)) -> None:
        if settings.api_key is None:
            return
        expected = settings.api_key.get_secret_value().encode()
        # Constant time, so the comparison leaks nothing of the key; the key is never echoed.
        if not hmac.compare_digest((given or "").encode(), expected):
            raise ApiError(401, "unauthorized", f"missing or wrong API key: send it in the {settings.api_key_header} header")

    def retriever_of(request: Request) -> HybridRetriever:
        return request.app.state.retriever  # type: ignore[no-any-return]

    guarded = [Depends(require_key)]

    # ----------------------------------------------------------------- probes, config

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        """Liveness: the process answers."""
        return Health()

    @app.get("/ready", response_model=Ready, tags=["service"], responses={503: {"model": Ready}})
    async def ready(request: Request) -> Any:
        """Readiness: the models are loaded and the store answers."""
        r = retriever_of(request)
        body = {"store": r.config.store.kind, "branches": r.config.branch_names}  # no paths or URLs: this is public
        try:
            count = await run_in_threadpool(r.count)
        except Exception as exc:  # the store is unreachable: not ready, and no traceback to the client
            log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
            return JSONResponse(Ready(ready=False, detail="the store did not answer; see the server log", **body).model_dump(), 503)
        if not await writes.probe(r):  # a write failed and the store still cannot write
            return JSONResponse(Ready(ready=False, documents=count, detail="the store cannot write (a write failed); "
                                      "see the server log", **body).model_dump(), 503)
        return Ready(ready=True, documents=count, **body)

    @app.get("/config", tags=["service"], dependencies=guarded)
    async def config(request: Request) -> dict[str, Any]:
        """The retriever's configuration and the service's limits; secrets are never shown."""
        r = retriever_of(request)
        cfg = r.config.model_dump(mode="json")
        if isinstance(r.config.store, QdrantStoreConfig):
            if r.config.store.api_key:
                cfg["store"]["api_key"] = "(set)"
            if r.config.store.url:
                cfg["store"]["url"] = _without_password(r.config.store.url)
        return {"retriever": cfg, "server": settings.public(), "rerank_available": r.reranker is not None,
                "rerank": _rerank_info(r), "version": __version__}

    # ---------------------------------------------------------------------- documents

    @app.post("/documents", response_model=AddedDocuments, tags=["documents"], dependencies=guarded)
    async def add_documents(body: AddDocuments, request: Request) -> AddedDocuments:
        """Index a batch of documents; posting an id again replaces that document (idempotent)."""
        r = retriever_of(request)
        _at_most(len(body.documents), settings.max_batch, "documents in one request", "send several smaller batches")
        for d in body.documents:
            _at_most(len(d.text), settings.max_text_chars, f"characters in document {d.id!r}", "split the document")
        texts = [d.text for d in body.documents]
        metas = [d.metadata for d in body.documents]
        ids = [d.id for d in body.documents]

        def add() -> tuple[list[str], int]:
            added = r.add_texts(texts, metas, ids, show_progress=False)
            return added, r.count()

        added, count = await writes.run("add", add)
        return AddedDocuments(ids=added, count=count)

    @app.delete("/documents", response_model=DeletedDocuments, tags=["documents"], dependencies=guarded)
    async def delete_documents(body: DeleteDocuments, request: Request) -> DeletedDocuments:
        """Delete documents by id; unknown ids are ignored."""
        r = retriever_of(request)
        _at_most(len(body.ids), settings.max_batch, "ids in one request", "send several smaller batches")

        def delete() -> tuple[int, int]:
            stored = len(r.get(body.ids))
            r.delete(body.ids)
            return stored, r.count()

        deleted, count = await writes.run("delete", delete)
        return DeletedDocuments(deleted=deleted, count=count)

    @app.get("/documents/{doc_id:any}", response_model=DocumentOut, tags=["documents"], dependencies=guarded)
    async def get_document(doc_id: str, request: Request) -> DocumentOut:
        """One stored document by id."""
        found = await run_in_threadpool(retriever_of(request).get, [doc_id])
        if not found:
            raise ApiError(404, "not_found", f"no document with id {doc_id!r}")
        return DocumentOut.of(found[0])

    # ------------------------------------------------------------------------- search

    @app.post("/search", response_model=SearchResult, tags=["search"], dependencies=guarded)
    async def search(body: SearchBody, request: Request) -> SearchResult:
        """The k best documents for a query, each with every branch's score and rank (and the reranker's,
        when the server has a rerank stage and the request does not turn it off)."""
        r = retriever_of(request)
        view, rerank = _view(r, body, settings), _rerank(r, body)
        _check_query(body.query, settings)
        t0 = time.perf_counter()
        # Search, fusion and the cross-encoder all run in a worker thread, never on the event loop.
        k = group_depth(body.k or r.config.runtime.k) if body.group_by else body.k
        hits = (await run_in_threadpool(partial(view.search_batch, rerank=rerank), [body.query], k, body.filter))[0]
        if body.group_by:
            hits = group_hits(hits, body.k or r.config.runtime.k, body.group_by)
        return SearchResult(hits=[HitOut.of(h) for h in hits], **_info(view, t0, rerank))

    @app.post("/search/batch", response_model=SearchBatchResult, tags=["search"], dependencies=guarded)
    async def search_batch(body: SearchBatchBody, request: Request) -> SearchBatchResult:
        """:http:post:`/search` for several queries in one request."""
        r = retriever_of(request)
        view, rerank = _view(r, body, settings), _rerank(r, body)
        _at_most(len(body.queries), settings.max_queries, "queries in one request", "split the batch")
        for q in body.queries:
            _check_query(q, settings)
        t0 = time.perf_counter()
        k = group_depth(body.k or r.config.runtime.k) if body.group_by else body.k
        results = await run_in_threadpool(partial(view.search_batch, rerank=rerank), body.queries, k, body.filter)
        if body.group_by:
            results = [group_hits(hits, body.k or r.config.runtime.k, body.group_by) for hits in results]
        return SearchBatchResult(results=[[HitOut.of(h) for h in hits] for hits in results], **_info(view, t0, rerank))

    # `hybrid-retriever index SOURCE --server URL`: chunked, skip-unchanged indexing and sync (indexing.py)
    app.include_router(indexing_router, dependencies=guarded)

    # ------------------------------------------------------------- API docs, offline

    _install_docs(app)

    # ---------------------------------------------------------------------- demo page

    if settings.demo_page:
        static = resources.files("hybrid_retriever_server") / "static"
        app.mount("/static", StaticFiles(directory=str(static)), name="static")

        @app.get("/", include_in_schema=False)
        async def demo_page() -> FileResponse:
            return FileResponse(str(static / "index.html"))

    return app


#: Where the Swagger UI files are served (from the fastapi-offline package, a server dependency).
DOCS_ASSETS = "/docs-assets"


def _install_docs(app: FastAPI) -> None:
    """OpenAPI docs at /docs (Swagger UI) with every script, style and icon served by the app itself,
    so they work offline (FastAPI's default page fetches them from a CDN)."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    title = f"{app.title} API"
    favicon = f"{DOCS_ASSETS}/favicon.png"
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=favicon, oauth2_redirect_url=redirect)

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _without_password(url: str) -> str:
    """``url`` with any password in it replaced (``http://user:secret@host`` -> ``http://user:***@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _load_models(r: HybridRetriever) -> None:
    """Encode one query with every branch and load the reranker, so models are in memory before the
    first request (each loads once and is shared by every concurrent request)."""
    for branch in r.branches.values():
        try:
            branch.encode_queries(["warm up"])
        except RuntimeError as exc:  # BM25 on an empty index: fitted at the first add, nothing to load
            log.debug("branch %r not warmed up: %s", branch.name, exc)
    if r.reranker is not None:
        r.reranker.backend()


def _rerank(r: HybridRetriever, body: SearchOptions) -> bool:
    """Whether this request goes through the rerank stage: the request's choice, else whenever the server has one."""
    if body.rerank and r.reranker is None:
        raise ApiError(400, "invalid_input", "this server has no rerank stage (its configuration has no enabled rerank "
                       "section); leave rerank out or set it to false")
    return r.reranker is not None if body.rerank is None else body.rerank


def _rerank_info(r: HybridRetriever) -> dict[str, Any] | None:
    """The rerank stage's settings as /config shows them (None without one)."""
    if r.reranker is None:
        return None
    rc = r.reranker.config
    return {"model": r.reranker.name, "depth": rc.depth, "order": rc.order, "weight": rc.weight, "timeout": rc.timeout,
            "on_error": rc.on_error, "loaded": r.reranker.loaded}


def _at_most(n: int, limit: int, what: str, fix: str, status: int = 413) -> None:
    if n > limit:
        code = "too_large" if status == 413 else "invalid_input"
        raise ApiError(status, code, f"{n} {what} is over this server's limit of {limit}; {fix}")


def _check_query(q: str, settings: ServerSettings) -> None:
    _at_most(len(q), settings.max_query_chars, "characters in a query", "shorten the query")


def _view(r: HybridRetriever, body: SearchOptions, settings: ServerSettings) -> HybridRetriever:
    """The retriever with this request's fusion settings and weights (the shared one when none)."""
    if body.k is not None:
        _at_most(body.k, settings.max_k, "results (k)", f"ask for k <= {settings.max_k}", status=400)
    if body.fusion is None and body.weights is None:
        return r
    fusion = None
    if body.fusion is not None:
        try:
            fusion = FusionConfig.model_validate({**r.config.fusion.model_dump(), **body.fusion.model_dump(exclude_none=True)})
        except ValidationError as exc:
            raise ConfigError("; ".join(e["msg"] for e in exc.errors())) from None
    return r.with_fusion(fusion=fusion, weights=body.weights)


def _info(view: HybridRetriever, t0: float, reranked: bool) -> dict[str, Any]:
    return {
        "branches": view.config.branch_names,
        "weights": view.config.weights(),
        "fusion": view.config.fusion.model_dump(mode="json"),
        "reranked": reranked,
        "took_ms": (time.perf_counter() - t0) * 1000,
    }


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error", "detail"}``; no stack trace ever reaches a client."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, _ERRORS.get(exc.status_code, "http_error"), exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and what, never the offending input itself (it may be large).
        problems = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return _error(422, "invalid_request", problems)

    @app.exception_handler(WriteOutcomeUnknown)
    async def write_outcome_unknown(request: Request, exc: WriteOutcomeUnknown) -> JSONResponse:
        return outcome_unknown_response(exc)

    @app.exception_handler(HybridRetrieverError)
    async def library_error(request: Request, exc: HybridRetrieverError) -> JSONResponse:
        status, code = _library_status(exc)
        if status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc)
        return _error(status, code, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal", "internal server error; the server log has the details")


def _library_status(exc: HybridRetrieverError) -> tuple[int, str]:
    if isinstance(exc, StoreUnavailableError):
        return 503, "store_unavailable"
    if isinstance(exc, BranchFailureError):  # every branch failed (or one, under on_branch_error: raise)
        return 503, "branch_failure"
    if isinstance(exc, IndexMismatchError):
        return 409, "index_mismatch"
    if isinstance(exc, (InvalidInputError, FilterError, ConfigError)):
        return 400, "invalid_input"
    return 400, "error"


__all__ = ["ApiError", "RetrieverSource", "create_app"]
