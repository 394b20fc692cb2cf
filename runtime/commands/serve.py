"""`imtalker-cam serve`: render for remote clients on this machine's GPU(s) through Ray Serve
(main thread: checks its own arguments, opens the front gate on --host:--port, starts or joins
a Ray cluster, deploys `runtime.server.deployment` behind the gate, then waits for SIGTERM or
SIGINT; signal handlers only raise an event the main thread waits on).

Its own arguments are checked before Ray starts: the graphs folder exists and holds every graph,
and the port is free (the gate binds it first, so nothing can take it meanwhile). On SIGTERM or
SIGINT it stops accepting, ends every session with "the server is shutting down", shuts Serve
and Ray down, ends what is left of the processes it started, and exits 0.

Needs the `server` extra (`pip install 'imtalker-cam[server]'`: ray[serve], websockets).
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from runtime.commands.device_args import add_device_arguments, session_options
from runtime.commands.leftovers import Process, descendants, end_leftovers
from runtime.core import validate as v
from runtime.server.gate import GateLimits

logger = logging.getLogger(__name__)

EXIT_INPUT = 1
DEFAULT_PORT = 8765
CAPACITY = v.Range(name="capacity", lo=1, hi=256, integer=True, unit="sessions per replica")
REPLICAS = v.Range(name="max-replicas", lo=1, hi=1024, integer=True)
GPUS = v.Range(name="gpus-per-replica", lo=0.0, hi=8.0)
CPUS = v.Range(name="num-cpus", lo=1, hi=4096, integer=True)
CONNECTIONS = v.Range(name="max-connections", lo=1, hi=65536, integer=True)
GATE = GateLimits()
BENCH_BUDGET = 0.7
"""Share of a second of compute a replica gives its sessions per second of video: the same
margin Auto hop keeps (`runtime.engine.live.hop_choice`)."""


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve",
        help="render for remote clients (imtalker-cam live --remote) through Ray Serve",
        description=(
            "Serve the model to remote clients over a WebSocket: each replica holds the graphs "
            "(one GPU each where there are GPUs) and admits --capacity sessions; beyond that a "
            "client is told 'server full'. Binds 127.0.0.1 unless --host says otherwise; put a "
            "TLS reverse proxy in front for other machines (see the README)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument(
        "--address", metavar="RAY_ADDRESS", help="join this Ray cluster instead of starting one"
    )
    p.add_argument(
        "--token",
        help="the token clients must send (default: IMTALKER_TOKEN, else the one stored in the "
        "config folder, generated and shown on first start)",
    )
    p.add_argument(
        "--capacity",
        type=int,
        help="sessions one replica serves at once (default: from the last `imtalker-cam "
        "bench` on this machine, else 1)",
    )
    p.add_argument(
        "--gpus-per-replica",
        type=float,
        help="GPUs each replica reserves (default: 1 where CUDA is usable, else 0)",
    )
    p.add_argument("--max-replicas", type=int, default=1, help="autoscaling limit (1)")
    p.add_argument(
        "--num-cpus",
        type=int,
        default=2,
        help="CPUs of the Ray cluster this command starts (2; ignored with --address)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=GATE.max_connections,
        help=f"connections open at once, all addresses ({GATE.max_connections})",
    )
    p.add_argument(
        "--max-per-address",
        type=int,
        default=GATE.max_per_address,
        help=f"connections open at once from one address ({GATE.max_per_address}; behind a "
        "reverse proxy on this machine every client has its address: raise it)",
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds (tests, demos)")
    models = p.add_argument_group("model")
    models.add_argument("--graphs", type=Path, metavar="DIR", help="compiled graphs in DIR")
    models.add_argument("--weights", type=Path, metavar="DIR", help="checkpoints folder")
    models.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: auto)")
    add_device_arguments(models)
    p.set_defaults(func=run)


def cuda_usable() -> bool:
    from runtime.model.execution.cuda_env import read_driver
    from runtime.model.execution.providers import compiled_providers

    if "CUDAExecutionProvider" not in compiled_providers():
        return False
    driver = read_driver()
    return driver.present and bool(driver.gpus)


def capacity_from_bench(real_time_factor: float) -> int:
    """Sessions whose compute fits in `BENCH_BUDGET` of a second per second of video."""
    if not math.isfinite(real_time_factor) or real_time_factor <= 0:
        return 1
    return max(1, math.floor(BENCH_BUDGET / real_time_factor + 1e-9))


def default_capacity() -> tuple[int, str]:
    from runtime.core import paths
    from runtime.engine.bench import read_result

    result = read_result(paths.cache_dir())
    if result is None:
        return 1, "no bench result on this machine (run `imtalker-cam bench`): 1 session"
    cap = capacity_from_bench(result.real_time_factor)
    return cap, (
        f"the last bench ({result.provider}, hop {result.settings.hop}) measured a real-time "
        f"factor of {result.real_time_factor:.2f}: {cap} session{'s' if cap != 1 else ''}"
    )


def _graphs(args: argparse.Namespace) -> Path:
    from runtime.model.compile.weights import resolve_graphs

    if args.graphs is not None:
        return Path(args.graphs)
    return resolve_graphs(args.weights)


def run(args: argparse.Namespace) -> int:
    from runtime.core import paths
    from runtime.model.compile.graph_version import GraphVersionError
    from runtime.model.store.errors import ModelStoreError
    from runtime.remote.token import TokenError, server_token

    try:
        _port(args.port)
        args.max_replicas = int(REPLICAS.check(args.max_replicas, label="--max-replicas"))
        args.num_cpus = int(CPUS.check(args.num_cpus, label="--num-cpus"))
        gate_limits = GateLimits(
            max_connections=int(CONNECTIONS.check(args.max_connections, label="--max-connections")),
            max_per_address=int(CONNECTIONS.check(args.max_per_address, label="--max-per-address")),
        )
        if args.capacity is not None:
            capacity = int(CAPACITY.check(args.capacity, label="--capacity"))
        else:
            capacity, why = default_capacity()
            logger.info("capacity: %s", why)
        gpus = args.gpus_per_replica
        gpus = (1.0 if cuda_usable() else 0.0) if gpus is None else GPUS.check(gpus)
        token, generated = server_token(args.token, paths.config_dir())
        graphs = _graphs(args)
        options = session_options(args, graphs.resolve())  # auto: the last bench of these
        check_graphs(graphs, precision=options.graph_precision)
    except (
        v.ValidationError,
        TokenError,
        GraphVersionError,
        ValueError,
        OSError,
        ModelStoreError,
    ) as exc:
        # ModelStoreError: no model, or it cannot be converted here (the convert extra).
        logger.error("%s", exc)
        return EXIT_INPUT
    from runtime.server.gate import start_gate

    upstream = ("127.0.0.1", _free_loopback_port())
    try:
        gate = start_gate(args.host, args.port, upstream=upstream, limits=gate_limits)
    except OSError as exc:
        logger.error("%s", _bind_error(args.host, args.port, exc))
        return EXIT_INPUT
    try:
        import ray
        from ray import serve

        from runtime.server.deployment import (
            APP_NAME,
            NAMESPACE,
            STOP_FLAG,
            STOP_POLL_S,
            ServeConfig,
            StopFlag,
            application,
            session_url,
        )
    except ImportError as exc:
        gate.close()
        logger.error(
            "the server needs the 'server' extra (pip install 'imtalker-cam[server]'): %s", exc
        )
        return EXIT_INPUT
    if generated:
        logger.warning(
            "generated the server token (stored in %s, shown only this once): %s",
            paths.config_dir(),
            token,
        )
    config = ServeConfig(
        graphs=graphs.resolve(),
        token=token,
        capacity=capacity,
        gpus_per_replica=gpus,
        max_replicas=args.max_replicas,
        options=options,
    )
    stop = threading.Event()
    own_cluster = not args.address
    started_procs: set[Process] = set()
    previous = _on_stop_signals(stop)  # during ray.init too (it installs its own: again below)
    try:
        if args.address:
            ray.init(address=args.address, namespace=NAMESPACE, log_to_driver=False)
        else:
            ray.init(
                num_cpus=args.num_cpus,
                num_gpus=None if gpus > 0 else 0,
                include_dashboard=False,
                log_to_driver=False,
                namespace=NAMESPACE,
                object_store_memory=100 * 2**20,
            )
        # After ray.init: Ray's own SIGTERM handler prints a stack and aborts (rc 134).
        _on_stop_signals(stop)
        flag = StopFlag.options(name=STOP_FLAG, namespace=NAMESPACE).remote()  # type: ignore[attr-defined]
        serve.start(http_options={"host": upstream[0], "port": upstream[1]})
        serve.run(application(config), name=APP_NAME, route_prefix="/")
        logger.info(
            "serving %s (%d session%s per replica, %g GPU each, up to %d replicas)",
            session_url(args.host, args.port),
            capacity,
            "s" if capacity != 1 else "",
            gpus,
            config.max_replicas,
        )
        started = time.monotonic()
        while args.duration is None or time.monotonic() - started < args.duration:
            if stop.wait(0.2):
                break
        logger.info("stopping: ending the sessions")
        try:
            ray.get(flag.set.remote(), timeout=5)
            time.sleep(4 * STOP_POLL_S)  # each replica's watcher sees it and ends its sessions
        except Exception:
            logger.warning("could not tell the replicas to end their sessions", exc_info=True)
    finally:
        if own_cluster:
            started_procs = descendants()
        gate.close()
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        except Exception:
            logger.warning("Serve did not shut down cleanly", exc_info=True)
        finally:
            ray.shutdown()
        left = end_leftovers(started_procs)
        logger.info("stopped%s", f" ({left} processes would not end)" if left else "")
        for sig, was in previous.items():
            signal.signal(sig, was)
    return 0


def check_graphs(folder: Path, *, precision: str) -> None:
    """The folder exists and holds every graph of its model version (`ValueError` naming the
    folder and what it lacks): said before Ray starts, not as a failed deployment."""
    from runtime.model.compile.graph_version import graphs_version
    from runtime.model.contract import graphs

    if not folder.exists():
        raise ValueError(f"the graphs folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"the graphs folder {folder} is not a folder")
    version = graphs_version(folder)
    missing = [
        g.filename_for(precision)
        for g in graphs(version)
        if not (folder / g.filename_for(precision)).is_file()
    ]
    if missing:
        raise ValueError(
            f"the graphs folder {folder} lacks {', '.join(missing)} "
            "(compile the graphs first: imtalker-cam models status says how)"
        )


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}: stop what uses it, or pass --port"
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs more privileges: pass a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine (--host)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _on_stop_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set `stop` (the main loop ends the server cleanly); the handlers they
    had before."""

    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise v.ValidationError(f"--port must be 1..65535, not {port}", subject="--port")
