"""Serving the application: the one function ``ews serve`` and ``ews demo`` both call.

The listening socket is bound first, so "serving" is said only once the address is really
ours, and a busy port is one plain :class:`ServeError` (the CLI exits 1 with it) instead of a
server that announces itself and then dies. Uvicorn then runs the app factory
``api.app:create_app`` on that socket, in one process or in ``workers`` processes that share
it (and the application database).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

APP = "api.app:create_app"
# uvicorn settings of `ews serve` (benchmarks/bench_api.py serves its bare endpoint with them).
# No access log: every access to an officer's record is in the audit log already.
# No X-Forwarded-For unless `--forwarded-allow-ips` names the proxies (uvicorn would believe
# it from 127.0.0.1, and the sign-in limiter keys on the client's address).
UVICORN: dict[str, Any] = {"log_level": "warning", "proxy_headers": False}


def uvicorn_options(forwarded_allow_ips: str = "") -> dict[str, Any]:
    """The uvicorn settings of `ews serve`: forwarded headers believed only from the proxies
    listed (comma-separated addresses or networks; empty: none)."""
    ips = forwarded_allow_ips.strip()
    if not ips:
        return dict(UVICORN)
    return {**UVICORN, "proxy_headers": True, "forwarded_allow_ips": ips}


BACKLOG = 2048


class ServeError(RuntimeError):
    """The service could not start (a busy port, an address that is not this machine's, an
    app that failed to start); the message says what to do."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a :class:`ServeError` naming the cause."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not a busy port: TIME_WAIT
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is already in use (another `ews serve` or `ews demo`?); "
                "stop it, or choose another port with --port"
            ) from e
        if e.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        raise ServeError(f"cannot listen on {host}:{port}: {e}") from e
    sock.set_inheritable(True)  # worker processes receive it
    return sock


def run_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    *,
    announce: Callable[[str], None] = print,
    **options: Any,
) -> None:
    """Bind ``host:port``, say so through ``announce``, then serve until interrupted.

    ``options`` go to :class:`uvicorn.Config` (for example ``forwarded_allow_ips``). Raises
    :class:`ServeError` when the port cannot be had or the app fails to start.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if workers < 1:
        raise ServeError(f"--workers must be at least 1, not {workers}")
    config = uvicorn.Config(
        APP, factory=True, host=host, port=port, workers=workers, **{**UVICORN, **options}
    )
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    announce(f"ews serving on http://{shown}:{port}/  (API docs at /docs; Ctrl-C stops)")
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    if workers == 1 and not server.started:
        raise ServeError("the service failed to start (its error is printed above)")
