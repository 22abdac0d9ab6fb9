"""Ctrl-C and SIGTERM during a run: stop promptly, and say that finished stages are kept; a failed run in one line."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import typer

from flows.cli.console import err_console, fail
from flows.prefect_server import ServerProcess, ServerStartFailed

INTERRUPT_GRACE_S = 10
"""After Ctrl-C, how long Prefect may take to record the crash before the process exits anyway.
(The engine would otherwise go on retrying an API that is gone, e.g. a server stopped by the same Ctrl-C.)"""


def stop_promptly_on_signals() -> None:
    """First SIGINT/SIGTERM: raise KeyboardInterrupt (temp files are cleaned up, locks released),
    and make sure the process is gone within INTERRUPT_GRACE_S whatever the engine does next."""

    def handler(signum, frame):
        err_console.print(f"[bold red]interrupted[/] ({signal.Signals(signum).name}): finished stages are cached; "
                          "run again to resume", highlight=False)
        timer = threading.Timer(INTERRUPT_GRACE_S, os._exit, args=(130,))
        timer.daemon = True
        timer.start()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def running_flow(what: str, server: ServerProcess | None) -> Iterator[None]:
    """Around a flow the command runs: signals stop it promptly (exit 130), the Prefect server this command started
    is ready first, and a failure is said in one line (the flow already logged its traceback)."""
    stop_promptly_on_signals()
    try:
        if server is not None:
            server.wait_until_ready()
        yield
    except typer.Exit:
        raise  # the command's own `fail`
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except ServerStartFailed as err:  # before any stage: nothing ran
        fail(str(err), code=1)
    except Exception as err:
        fail(f"{what} failed: {err}", code=1)
