"""Ctrl-C and SIGTERM during a run: stop promptly, and say that finished stages are kept."""

from __future__ import annotations

import os
import signal
import threading

from flows.cli.console import err_console

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
