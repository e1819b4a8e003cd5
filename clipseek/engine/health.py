"""The containers' health check (compose healthchecks, Kubernetes probes, the supervisor's readiness):

    python -m clipseek.engine.health grpc://127.0.0.1:8081      # exit 0 when the executor is serving
    python -m clipseek.engine.health http://127.0.0.1:51001/    # exit 0 on HTTP 200
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request


def check_health(target: str, timeout_s: float = 5.0) -> str | None:
    """None when the service at ``target`` (``grpc://host:port`` or an http URL) is serving, else why not."""
    if target.startswith("grpc://"):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        address = target.removeprefix("grpc://")
        with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                  timeout=timeout_s)
            except grpc.RpcError as exc:
                return f"{target}: {exc.code().name} {exc.details() or ''}".strip()
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
        return None
    if target.startswith(("http://", "https://")):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        try:
            with opener.open(target, timeout=timeout_s) as response:
                return None if response.status == 200 else f"{target}: HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{target}: {getattr(exc, 'reason', exc)}"
    raise ValueError(f"health target must be grpc://host:port or an http(s) URL, got {target!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipseek.engine.health",
                                     description="exit 0 when the service at TARGET is serving")
    parser.add_argument("target", help="grpc://host:port (an executor) or an http(s) URL")
    parser.add_argument("--timeout-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    problem = check_health(args.target, args.timeout_s)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
