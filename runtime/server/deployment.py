"""The Ray Serve application: a FastAPI WebSocket ingress whose replicas each hold the graphs
(on one GPU where there is one) and serve up to `capacity` sessions (replica actor processes;
each WebSocket on the replica's event loop, hops on worker threads, `runtime.server.connection`).

Admission is explicit: a replica counts its sessions and answers "server full" beyond its
capacity. Ray Serve admits, per replica, the sessions, the connections still waiting for their
hello (`ServerLimits.max_pending`, closed within seconds) and one more
(`max_ongoing_requests`), so a crowd of silent sockets never queues ahead of a real client in
Ray's proxy and a refusal reaches the client instead of queueing; replicas scale on the
requests in flight (`target_ongoing_requests` = capacity) between `min_replicas` and
`max_replicas`. On shutdown `serve` raises the `StopFlag` actor: each replica's watcher ends its
sessions with "the server is shutting down" before Serve goes down.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' parameter types at
# runtime (a string annotation on a Serve ingress method does not resolve to WebSocket).

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI, WebSocket
from ray import serve
from starlette.websockets import WebSocketDisconnect

from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import SessionOptions
from runtime.server.connection import Admission, Disconnected, ServerContext, handle
from runtime.server.limits import ServerLimits

logger = logging.getLogger(__name__)

APP_NAME = "imtalker"
SESSION_PATH = "/session"
STOP_FLAG = "imtalker-stop"
NAMESPACE = "imtalker"
STOP_POLL_S = 0.25


@ray.remote(num_cpus=0)
class StopFlag:
    """Raised once by `serve` when it is told to stop; the replicas watch it."""

    def __init__(self) -> None:
        self._raised = False

    def set(self) -> None:
        self._raised = True

    def is_set(self) -> bool:
        return self._raised


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    graphs: Path
    token: str
    capacity: int = 1
    """Sessions one replica serves at once (from the bench's measured throughput)."""
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 1
    options: SessionOptions = field(default_factory=SessionOptions)


class StarletteChannel:
    """`runtime.server.connection.Channel` over a Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def receive(self) -> str | bytes:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            raise Disconnected
        data = message.get("bytes")
        if data is not None:
            return bytes(data)
        text = message.get("text")
        if text is None:
            raise Disconnected
        return str(text)

    async def send_text(self, data: str) -> None:
        try:
            await self._ws.send_text(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise Disconnected from exc

    async def send_bytes(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise Disconnected from exc

    async def close(self, code: int, reason: str) -> None:
        try:
            await self._ws.close(code=code, reason=reason)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise Disconnected from exc


web = FastAPI(title="imtalker-cam render server")


@serve.deployment(name="RenderReplica")
@serve.ingress(web)
class RenderReplica:
    def __init__(self, graphs: str, token: str, capacity: int, options: SessionOptions) -> None:
        logging.basicConfig(level=logging.INFO)
        models = open_model_set(Path(graphs), options=options)
        on_gpu = models.on_gpu
        self._ctx = ServerContext(
            models=models, token=token, admission=Admission(capacity=capacity), on_gpu=on_gpu
        )
        self._watcher: asyncio.Task[None] | None = None
        logger.info(
            "replica %d ready: IMTalker %s on %s, %d sessions at once",
            os.getpid(),
            models.version.name,
            models.summary(),
            capacity,
        )

    @web.websocket(SESSION_PATH)
    async def session(self, ws: WebSocket) -> None:
        if self._watcher is None:  # the replica's event loop is running here
            self._watcher = asyncio.create_task(self._watch_stop())
        await ws.accept()
        await handle(StarletteChannel(ws), self._ctx)

    async def _watch_stop(self) -> None:
        """Ends every session with a reason once `serve` raises the stop flag."""
        try:
            flag = ray.get_actor(STOP_FLAG, namespace=NAMESPACE)
        except ValueError:  # deployed by something else than `serve`: no flag to watch
            return
        try:
            while not await flag.is_set.remote():
                await asyncio.sleep(STOP_POLL_S)
        except ray.exceptions.RayError:  # `serve` is gone: Serve itself ends the replica
            return
        ended = self._ctx.live.end_all()
        logger.info("shutting down: ended %d session%s", ended, "" if ended == 1 else "s")

    @web.get("/health")
    def health(self) -> dict[str, Any]:
        ctx = self._ctx
        return {
            "sessions": ctx.admission.active,
            "capacity": ctx.admission.capacity,
            "waiting_for_hello": ctx.pending.count,
        }


def application(config: ServeConfig) -> Any:
    """The bound Serve application for `serve.run`."""
    if config.capacity < 1:
        raise ValueError("capacity must be at least 1 session per replica")
    autoscaling = {
        "min_replicas": config.min_replicas,
        "max_replicas": max(config.min_replicas, config.max_replicas),
        "target_ongoing_requests": config.capacity,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 60.0,
    }
    replica: Any = RenderReplica  # a Deployment once decorated (Serve's typing loses it)
    deployment = replica.options(
        ray_actor_options={
            "num_gpus": config.gpus_per_replica,
            "num_cpus": config.cpus_per_replica,
        },
        max_ongoing_requests=config.capacity + ServerLimits().max_pending + 1,
        autoscaling_config=autoscaling,
        health_check_period_s=2.0,
        health_check_timeout_s=10.0,
    )
    return deployment.bind(str(config.graphs), config.token, config.capacity, config.options)


def session_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:{port}{SESSION_PATH}"
