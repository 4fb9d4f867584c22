"""Test-only entry point: ``contimg-photometry`` with faults injected into the watcher's
event handler (never shipped; the installed daemon imports no test code).

Run as ``python tests/support/faulty_daemon.py run --config FILE`` (the harness does:
``Service.start(entry="faulty_daemon")``). The faults are :func:`fakes.handler_fault`'s,
raised inside :meth:`EnqueueHandler.dispatch`'s guard, where a real handler error
would be: ``RAISE-IN-HANDLER*.fits`` raises an ordinary exception (to be survived),
``KILL-WATCHER*.fits`` a BaseException that kills the dispatcher thread (to be detected).
"""

from __future__ import annotations

import sys

from fakes import handler_fault

from dsa110_contimg.service import watcher


class FaultyHandler(watcher.EnqueueHandler):
    """The real handler, with the fault run before each event is turned into a queue item."""

    fault = staticmethod(handler_fault())

    def _item(self, event):
        self.fault(event)
        return watcher.EnqueueHandler._item(event)


def main(argv: list[str] | None = None) -> int:
    watcher.EnqueueHandler = FaultyHandler   # the Watcher builds its handler from this name
    from dsa110_contimg.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
