"""Where clipseek works around jina, in one place: written for jina 3.34.0 (pinned in pyproject.toml; the
project is no longer maintained upstream), to be checked if that pin ever moves. Each is applied where
it is needed (never at import time) and says why.

- ``skip_jina_start_lock``: jina serialises executor start-ups of one class on a machine with a file
  lock it waits for without a timeout; a leftover process of an earlier run then blocks every start.
- ``fast_document_ids``: docarray reads each document's id from protobuf through ``parse_obj_as``, which
  builds a pydantic validator per call; a search answer of 10 clips crossed it ~15 times.
- ``cheap_request_graphs``: jina's gateway deep-copies its whole topology graph for every request
  (each executor's endpoint list, document models and logger included) to get fresh per-request
  state; the copies now share what no request changes.
- ``export_offline``: jina's Kubernetes export asks Jina Hub and Docker Hub about every image it writes
  down; clipseek's images are its own, so the lookups are replaced while the export runs.

clipseek's gateway (clipseek/engine/gateway.py) subclasses jina's CompositeGateway and builds its HTTP
app from jina's docarray-v2 FastAPI factory: it names those internals where it uses them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def skip_jina_start_lock() -> None:
    """Executor classes defined from now on (the service jina imports when it starts it) take no start-up
    lock. jina serialises the ``__init__`` of executors of the same class on one machine with a file lock
    in ``~/.cache/jina/locks`` and waits for it without a timeout; clipseek serve runs one process per
    executor, so that lock only ever made a start wait for a process left over from another run."""
    import jina.serve.executors as executors

    executors.avoid_concurrent_lock_cls = lambda cls: (lambda init: init)


def fast_document_ids() -> None:
    """docarray's ``ID.from_protobuf`` with one validator built once instead of one per call (the same
    validation: pydantic's for docarray's ID type)."""
    from docarray.typing import ID
    from pydantic import TypeAdapter

    if getattr(ID.from_protobuf, "_clipseek", False):  # every gRPC client calls it: patch once
        return
    adapter = TypeAdapter(ID)

    def from_protobuf(cls: type, pb_msg: str) -> ID:
        return adapter.validate_python(pb_msg) if cls is ID else TypeAdapter(cls).validate_python(pb_msg)

    from_protobuf._clipseek = True  # type: ignore[attr-defined]
    ID.from_protobuf = classmethod(from_protobuf)


def cheap_request_graphs() -> None:
    """``copy.deepcopy`` of jina's ``TopologyGraph`` (done once per request by the gateway's request
    handler) copies the graph's nodes and their per-request state only, sharing with the template what
    is set once at start-up (endpoints, document models, metadata, logger). A node's per-request state is
    what its ``get_leaf_req_response_tasks`` changes: ``parts_to_send`` (filled in place; a new list
    here), ``start_time``, ``end_time``, ``status``, ``result_in_params_returned`` (assigned, never
    changed in place: a copy starts from the template's values, as a deep copy would)."""
    import copy

    from jina.serve.runtimes.gateway.graph.topology_graph import TopologyGraph

    node_class = TopologyGraph._ReqReplyNode
    if getattr(node_class, "_clipseek_copy", False):
        return

    def copy_node(self: object, memo: dict) -> object:
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(self.__dict__)
        new.parts_to_send = copy.deepcopy(self.parts_to_send, memo)
        new.outgoing_nodes = [copy.deepcopy(node, memo) for node in self.outgoing_nodes]
        return new

    def copy_graph(self: object, memo: dict) -> object:
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(self.__dict__)
        new._origin_nodes = [copy.deepcopy(node, memo) for node in self._origin_nodes]
        return new

    node_class.__deepcopy__ = copy_node
    node_class._clipseek_copy = True
    TopologyGraph.__deepcopy__ = copy_graph


@contextlib.contextmanager
def export_offline(image: str) -> Iterator[None]:
    """jina's export asks Jina Hub for each image's name and Docker Hub for its own version tag (a
    label it never writes out). Here every image is ours and nothing is asked."""
    from jina.constants import __default_executor__
    from jina.orchestrate.deployments.config import docker_compose, helper, k8s

    def image_name(uses: str | None) -> str:
        if isinstance(uses, str) and uses.startswith("docker://"):
            return uses.removeprefix("docker://")
        if uses is None or uses == __default_executor__ or "Gateway" in uses:
            return image  # the gateway and the shard head run jina's own code: it is in our image
        raise ValueError(f"only docker:// executors can be exported offline, got {uses!r}")

    def no_hub(uses: str) -> str:
        raise ValueError(f"refusing to look {uses!r} up on Jina Hub")

    patches = [(module, "resolve_image_name", image_name) for module in (k8s, docker_compose)]
    patches += [(module, "get_base_executor_version", lambda: "unused") for module in (k8s, docker_compose)]
    patches += [(helper, "get_image_name", no_hub), (docker_compose, "get_image_name", no_hub)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, replacement in patches:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
