"""`imtalker-cam serve`: render for remote clients on this machine's GPU(s) through Ray Serve
(main thread: starts or joins a Ray cluster, deploys `runtime.server.deployment`, then waits
for Ctrl-C / SIGTERM and shuts the application down).

Needs the `server` extra (`pip install 'imtalker-cam[server]'`: ray[serve], websockets).
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from runtime.commands.device_args import add_device_arguments, session_options
from runtime.core import validate as v

logger = logging.getLogger(__name__)

EXIT_INPUT = 1
DEFAULT_PORT = 8765
CAPACITY = v.Range(name="capacity", lo=1, hi=256, integer=True, unit="sessions per replica")
REPLICAS = v.Range(name="max-replicas", lo=1, hi=1024, integer=True)
GPUS = v.Range(name="gpus-per-replica", lo=0.0, hi=8.0)
CPUS = v.Range(name="num-cpus", lo=1, hi=4096, integer=True)
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
    from runtime.remote.token import TokenError, server_token

    try:
        _port(args.port)
        args.max_replicas = int(REPLICAS.check(args.max_replicas, label="--max-replicas"))
        args.num_cpus = int(CPUS.check(args.num_cpus, label="--num-cpus"))
        if args.capacity is not None:
            capacity = int(CAPACITY.check(args.capacity, label="--capacity"))
        else:
            capacity, why = default_capacity()
            logger.info("capacity: %s", why)
        gpus = args.gpus_per_replica
        gpus = (1.0 if cuda_usable() else 0.0) if gpus is None else GPUS.check(gpus)
        token, generated = server_token(args.token, paths.config_dir())
        graphs = _graphs(args)
    except (v.ValidationError, TokenError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return EXIT_INPUT
    if generated:
        logger.warning(
            "generated the server token (stored in %s, shown only this once): %s",
            paths.config_dir(),
            token,
        )
    try:
        import ray
        from ray import serve

        from runtime.server.deployment import APP_NAME, ServeConfig, application, session_url
    except ImportError as exc:
        logger.error(
            "the server needs the 'server' extra (pip install 'imtalker-cam[server]'): %s", exc
        )
        return EXIT_INPUT
    config = ServeConfig(
        graphs=graphs.resolve(),
        token=token,
        capacity=capacity,
        gpus_per_replica=gpus,
        max_replicas=args.max_replicas,
        options=session_options(args, graphs.resolve()),
    )
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=args.num_cpus,
            num_gpus=None if gpus > 0 else 0,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=100 * 2**20,
        )
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
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
        tick = threading.Event()
        while args.duration is None or time.monotonic() - started < args.duration:
            tick.wait(0.2)
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()
    return 0


def _port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise v.ValidationError(f"--port must be 1..65535, not {port}", subject="--port")
