"""clipseek's gateway: jina's gRPC + HTTP gateway with what a service on a network needs.

    python -m clipseek.engine.gateway --port 51000 51001 --graph-description ... --deployments-addresses ...

takes the options of ``jina gateway`` and serves the same API, with these differences:

- **Each request crosses only the executors that serve its endpoint.** Executors pass other
  endpoints through ``/default`` so that jina accepts the chain; here the routing ignores that
  pass-through, so ``/search`` goes to the text encoder and the indexer only, and a dead video loader
  or image encoder leaves search up.
- **Every document of a request is answered.** jina's HTTP handler splits a request into batches of
  100 and returns the first batch's answer only; here a request is sent as one.
- **Requests are validated with clipseek's document types** (:mod:`clipseek.docs`): a NaN, an
  infinity or an integer too large for the wire gets HTTP 422 naming the field, not a 500.
- **`GET /` is a readiness check**: 200 when every executor answers its gRPC health check, 503
  naming those that do not. Compose and Kubernetes use it.
- **An optional API key** (``CLIPSEEK_API_KEY``): when set, HTTP requests need
  ``Authorization: Bearer <key>`` (401 otherwise) and gRPC calls the same ``authorization`` metadata
  (UNAUTHENTICATED otherwise). Exempt: ``GET /`` (readiness), the OpenAPI pages and the gRPC
  health service (liveness probes).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

import grpc
from jina.serve.runtimes.gateway.composite import CompositeGateway
from jina.serve.runtimes.gateway.grpc import GRPCGateway
from jina.serve.runtimes.gateway.http import HTTPGateway

from clipseek.docs import ENDPOINTS

logger = logging.getLogger("clipseek.engine.gateway")

DEFAULT_ENDPOINT = "/default"
HEALTH_TIMEOUT_S = 2.0
RECONNECT_OPTIONS = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.min_reconnect_backoff_ms": 100,
                     "grpc.max_reconnect_backoff_ms": 1000}
# Paths any client may GET without the key: readiness and the API's description.
OPEN_HTTP_PATHS = frozenset({"/", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"})
OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/",)


# -- the API key -------------------------------------------------------------------------------------
def api_key_matches(expected: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` value (``Bearer <key>``) carries ``expected``; constant time."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


class ApiKeyMiddleware:
    """ASGI middleware: every HTTP request but those of OPEN_HTTP_PATHS needs the key."""

    def __init__(self, app: Any, api_key: str):
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        method = scope.get("method", "")
        if scope["type"] != "http" or method == "OPTIONS" or (method in ("GET", "HEAD")
                                                               and scope["path"] in OPEN_HTTP_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if api_key_matches(self.api_key, authorization):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                                     "(the key is CLIPSEEK_API_KEY of the server)"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """gRPC: every call but the health service needs ``authorization: Bearer <key>`` in its metadata."""

    def __init__(self, api_key: str):
        self.api_key = api_key

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_GRPC_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        if api_key_matches(self.api_key, metadata.get("authorization")):
            return handler
        return _refusing_handler(handler)


def _refusing_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""
    message = "missing or wrong API key: send the metadata 'authorization: Bearer <key>' (CLIPSEEK_API_KEY)"

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover (an async generator, as a streaming handler must be)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    streaming = handler.response_streaming
    return kinds[(handler.request_streaming, streaming)](
        refuse_stream if streaming else refuse, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


# -- routing and requests ----------------------------------------------------------------------------
def route_only_to_serving_executors(topology_graph: Any) -> None:
    """Forget each executor's ``/default`` pass-through in the gateway's routing: jina then skips an
    executor for the endpoints it does not serve (it sends a request on only when the executor lists
    the endpoint or ``/default``). Call after jina has discovered the endpoints and derived the API's
    document types from them (that derivation needs the pass-through)."""
    for node in topology_graph.all_nodes:
        if node.endpoints is not None:
            node.endpoints = [e for e in node.endpoints if e != DEFAULT_ENDPOINT]


def use_document_types(models_map: dict[str, dict[str, Any]]) -> None:
    """Make the HTTP API parse requests with clipseek's own document types (whose numbers must be
    finite and fit the wire) instead of the models jina rebuilt from the executors' JSON schemas
    (which lose those constraints)."""
    for endpoint, doc_type in ENDPOINTS.items():
        if endpoint in models_map:
            models_map[endpoint]["input"] = doc_type
            models_map[endpoint]["output"] = doc_type
    models_map.pop(DEFAULT_ENDPOINT, None)  # the executors' pass-through is no endpoint of the API


class WholeRequests:
    """The gateway's streamer for the HTTP API: each request sent as one (jina's HTTP handler streams a
    request in batches of ``request_size``, 100, and answers with the first batch only), and failures
    turned into answers that say what failed: 503 naming the executor that is down (also in the
    ``x-clipseek-service`` header), 500 naming the one that failed."""

    def __init__(self, streamer: Any):
        self._streamer = streamer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._streamer, name)

    async def stream_docs(self, docs: Any, request_size: int = 100, **kwargs: Any):
        from fastapi import HTTPException
        from jina.excepts import InternalNetworkError

        endpoint = kwargs.get("exec_endpoint") or "this endpoint"
        if not len(docs) and kwargs.get("exec_endpoint"):  # jina would answer `null`
            raise HTTPException(422, detail=f"{endpoint}: the request has no documents (send them in data)")
        try:
            async for response in self._streamer.stream_docs(docs, request_size=max(1, len(docs)), **kwargs):
                status = response.header.status
                if status.code == status.ERROR:
                    executor = status.exception.executor or "an executor"
                    detail = " ".join(status.description.strip().splitlines()[:3])
                    raise HTTPException(500, detail=f"{endpoint} failed in {executor}: {detail}")
                yield response
        except InternalNetworkError as exc:
            service = _deployment_of(exc)
            code = 504 if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else 503
            raise HTTPException(code, detail=f"the {service or 'executor'} service is down or not answering; "
                                             f"{endpoint} needs it ({exc.details().split(' |')[0]})",
                                headers={"x-clipseek-service": service}) from None


def _deployment_of(exc: Any) -> str:
    """The executor named in one of jina's network errors ('... with deployment indexer at ...')."""
    import re

    found = re.search(r"deployment `?(\w+)", exc.details() or "")
    return found.group(1) if found else ""


def describe_validation_errors(errors: list[dict[str, Any]]) -> list[str]:
    """FastAPI's validation errors as short lines (``data[0].end_s: Input should be a finite number,
    got nan``). The request's ``data`` may be a list or one document; the errors of the other reading
    are dropped."""
    lines = []
    as_list = any(isinstance(p, str) and p.startswith("list[") for e in errors for p in e.get("loc", ()))
    for error in errors:
        loc = [p for p in error.get("loc", ()) if p != "body"]
        if len(loc) > 1 and isinstance(loc[1], str) and loc[0] == "data":
            if loc[1].startswith("list[") != as_list:
                continue
            loc = [loc[0], *loc[2:]]
        where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
        given = repr(error.get("input"))
        given = given if len(given) <= 60 else given[:57] + "..."
        lines.append(f"{where or 'request'}: {error.get('msg', 'invalid')}, got {given}")
    return lines


async def executors_down(addresses: dict[str, list[str]], timeout_s: float = HEALTH_TIMEOUT_S) -> dict[str, str]:
    """{executor: why} for each executor whose gRPC health check fails at any of its addresses."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async def check(address: str) -> str:
        async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                        timeout=timeout_s)
            except grpc.RpcError as exc:
                return f"{address}: {exc.code().name}"
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
        return ""

    pairs = [(name, address) for name, many in addresses.items() for address in many]
    results = await asyncio.gather(*(check(address) for _, address in pairs))
    down: dict[str, str] = {}
    for (name, _), problem in zip(pairs, results, strict=True):
        if problem:
            down[name] = f"{down[name]}; {problem}" if name in down else problem
    return down


def _grpc_addresses(deployments_addresses: str) -> dict[str, list[str]]:
    parsed = json.loads(deployments_addresses or "{}")
    found = {name: (value.get("GRPC", value.get("grpc", [])) if isinstance(value, dict) else list(value))
             for name, value in parsed.items()}
    return {name: [a.removeprefix("grpc://") for a in addresses] for name, addresses in found.items()}


def _api_key() -> str:
    from clipseek.engine.serve import ServeSettings
    from clipseek.settings import load_settings

    return load_settings(ServeSettings).api_key


# -- the gateway classes -----------------------------------------------------------------------------
class ClipseekGRPCGateway(GRPCGateway):
    """jina's gRPC gateway with the API key checked by an interceptor."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        api_key = _api_key()
        if api_key:
            self.grpc_tracing_server_interceptors = [*(self.grpc_tracing_server_interceptors or []),
                                                     ApiKeyInterceptor(api_key)]


class ClipseekHTTPGateway(HTTPGateway):
    """jina's HTTP gateway: whole requests, clipseek's types, readiness on ``GET /``, the API key."""

    @property
    def app(self) -> Any:
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from jina.helper import extend_rest_interface
        from jina.serve.runtimes.gateway.http_fastapi_app_docarrayv2 import get_fastapi_app

        streamer = self._request_handler.streamer
        use_document_types(streamer._endpoints_models_map)
        app = extend_rest_interface(get_fastapi_app(
            streamer=WholeRequests(streamer), title=self.title or "clipseek",
            description=self.description or "Find the moment in your videos that matches a sentence.",
            expose_graphql_endpoint=False, cors=self.cors, logger=self.logger, tracing=self.tracing,
            tracer_provider=self.tracer_provider))
        addresses = _grpc_addresses(self.runtime_args.deployments_addresses)

        @app.exception_handler(RequestValidationError)
        async def refuse(request: Any, exc: RequestValidationError) -> JSONResponse:
            # FastAPI's own answer echoes the input, and a NaN in it cannot even be written as JSON (a 500)
            lines = describe_validation_errors(list(exc.errors()))
            return JSONResponse({"detail": "; ".join(lines), "errors": lines}, status_code=422)

        @app.get("/", summary="Readiness: 200 when every executor of the Flow answers, else 503")
        async def ready() -> Any:
            down = await executors_down(addresses)
            if down:
                return JSONResponse({"ready": False, "down": down}, status_code=503)
            return {"ready": True, "executors": sorted(addresses)}

        api_key = _api_key()
        if api_key:
            app.add_middleware(ApiKeyMiddleware, api_key=api_key)
        return app


class ClipseekGateway(CompositeGateway):
    """gRPC and HTTP on their ports (``--protocol GRPC HTTP``), routed to the serving executors only."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        classes = {"GRPC": ClipseekGRPCGateway, "HTTP": ClipseekHTTPGateway}
        servers = []
        for server_kwargs in self._server_kwargs:
            protocol = str(server_kwargs["runtime_args"]["protocol"]).upper().rsplit(".", 1)[-1]
            if protocol not in classes:
                raise ValueError(f"clipseek's gateway serves GRPC and HTTP, not {protocol}")
            servers.append(classes[protocol](**server_kwargs))
        self.servers = self.gateways = servers

    async def setup_server(self) -> None:
        cancel = getattr(self, "is_cancel", None)
        for server in self.servers:  # jina gives them events of their own, which no signal ever sets:
            server.is_cancel = cancel  # SIGTERM could not stop a gateway still looking for its executors
        if not await self._wait_for_executors():
            raise SystemExit(0)  # asked to stop before the executors answered: nothing to shut down
        await super().setup_server()  # discovers the executors' endpoints, builds the HTTP API
        streamer = self._request_handler.streamer
        route_only_to_serving_executors(streamer.topology_graph)

        async def discovered(is_cancel: Any = None) -> None:
            """The endpoints are known: keep the API jina derived from them before the rerouting."""

        streamer._get_endpoints_input_output_models = discovered

    async def _wait_for_executors(self) -> bool:
        """Wait, quietly, until every executor answers its health check (jina would ask each for its
        endpoints every second and log a warning each time); False when asked to stop meanwhile."""
        addresses = _grpc_addresses(self.runtime_args.deployments_addresses)
        cancel = getattr(self, "is_cancel", None)
        said = False
        while not (cancel is not None and cancel.is_set()):
            down = await executors_down(addresses, timeout_s=1.0)
            if not down:
                return True
            if not said:
                logger.info("waiting for %s to start", ", ".join(sorted(down)))
                said = True
            await asyncio.sleep(0.25)
        return False


# -- entry point -------------------------------------------------------------------------------------
def gateway_args(argv: Iterable[str]) -> Any:
    """``jina gateway`` options, with clipseek's gateway class."""
    from jina.parsers import set_gateway_parser

    args = set_gateway_parser().parse_args(list(argv))
    args.uses = ClipseekGateway.__name__
    # An executor that was restarted is reached again within a second (gRPC's reconnect backoff would
    # otherwise grow to two minutes while it was down).
    args.grpc_channel_options = {**RECONNECT_OPTIONS, **(getattr(args, "grpc_channel_options", None) or {})}
    return args


def main(argv: list[str] | None = None) -> None:
    from jina_cli.api import gateway

    from clipseek.engine.executor import exit_with_parent
    from clipseek.engine.jina_compat import cheap_request_graphs, fast_document_ids

    fast_document_ids()
    cheap_request_graphs()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = exit_with_parent(argv)
    gateway(gateway_args(argv))


if __name__ == "__main__":
    main()
