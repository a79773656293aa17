"""`modelplane serve`: run the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer
import uvicorn

from modelplane.cli.common import ConfigOption, err_console, exits_on_error, fail, read_config
from modelplane.config.load import LoadedConfig
from modelplane.serving.gateway import Gateway

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]  # uvicorn's levels


@exits_on_error
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: server.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (default: server.port, 8400).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    log_level: Annotated[
        LogLevel, typer.Option(metavar="LEVEL", help="uvicorn's: critical, error, warning, info, debug or trace.")
    ] = "warning",
) -> None:
    """Run the gateway: one OpenAI-compatible endpoint in front of the configured models."""
    loaded = read_config(config)
    bind_host = host or loaded.config.server.host
    bind_port = loaded.config.server.port if port is None else port
    if not loaded.config.keys and not _is_loopback(bind_host):
        fail(
            f"refusing to listen on {bind_host} with no API keys configured",
            "add keys to the config (`modelplane keys new --tenant NAME`) or listen on 127.0.0.1",
        )
    _check_free(bind_host, bind_port)
    err_console.print(startup_line(loaded, bind_host, bind_port), markup=False, soft_wrap=True)
    if workers > 1:
        _serve_workers(loaded, bind_host, bind_port, workers, log_level)
    else:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve_one(loaded, bind_host, bind_port, log_level))


async def _serve_one(loaded: LoadedConfig, host: str, port: int, log_level: str) -> None:
    from modelplane.server.admin import reload_logged
    from modelplane.server.app import create_app

    env = dict(os.environ)
    gateway = await Gateway.start(loaded)  # fails here, before listening, on a bad model path or ledger URL
    app = create_app(loaded, env=env, gateway=gateway)
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = asyncio.ensure_future(reload_logged(gateway, env))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            http="httptools",
            loop="none",
            lifespan="on",
            timeout_graceful_shutdown=30,
        )
    )
    await server.serve()


class _Server(uvicorn.Server):
    """uvicorn's server, except that a signal-initiated graceful shutdown exits 0.

    uvicorn re-raises SIGTERM/SIGINT once it has shut down, so the process would die by the
    signal (exit -15); but by then the ledger is drained and nothing failed.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        try:
            yield
        finally:
            # Shutdown is done and the ledger drained. Another SIGTERM now (a supervisor repeating
            # itself) must not kill the exiting process: ignored handlers survive interpreter
            # teardown, which puts every other Python handler back to the default action.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)


def _serve_workers(loaded: LoadedConfig, host: str, port: int, workers: int, log_level: str) -> None:
    """Several processes: each builds its own gateway from the same config (Redis/Postgres make them one)."""
    os.environ["MODELPLANE_CONFIG"] = "" if loaded.embedded else str(Path(loaded.source).resolve())
    os.environ["MODELPLANE_HOME"] = str(loaded.home)
    uvicorn.run(
        "modelplane.server.factory:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        http="httptools",
        timeout_graceful_shutdown=30,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (it comes with uvicorn[standard]): a faster event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def startup_line(loaded: LoadedConfig, host: str, port: int) -> str:
    cfg = loaded.config
    where = f"http://{host}:{port}"
    if loaded.embedded:
        return (
            f"modelplane: embedded default (bundled local model gemma-3-270m, SQLite ledger at "
            f"{loaded.ledger_url().removeprefix('sqlite:///')}); listening on {where}, local only (127.0.0.1), "
            f'no API keys. Try: model="chat" with base_url {where}/v1'
        )
    access = "no API keys: local only" if not cfg.keys else f"{len(cfg.keys)} API keys"
    return (
        f"modelplane: {loaded.source} (version {loaded.version}): {len(cfg.features)} features, "
        f"{len(cfg.models)} models; listening on {where}, {access}"
    )


def _check_free(host: str, port: int) -> None:
    """Fail before loading models when the address is taken: a one-line reason, not a late uvicorn error."""
    if port == 0:
        return
    try:
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}", "stop the other server, or pass --port")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
