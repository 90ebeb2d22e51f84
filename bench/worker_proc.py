"""One benchmark worker process: what `queuetopia worker bench.apps:topia` does, plus a
ready file once the worker listens, and the run log written when it stops.

    python bench/worker_proc.py --concurrency 10 --ready FILE [--log-mode cli|json|off]

Environment: QUEUETOPIA_DSN, QUEUETOPIA_BENCH_SCOPE, QUEUETOPIA_BENCH_LOG,
QUEUETOPIA_BENCH_RECORD (see bench/apps.py). SIGTERM stops it gracefully."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

# Appended: an engine on $PYTHONPATH wins over this checkout (see bench/run.py).
sys.path.append(str(Path(__file__).resolve().parent.parent))


def _setup_logging(mode: str) -> None:
    if mode == "off":
        logging.getLogger("queuetopia").setLevel(logging.WARNING)
        return
    # Exactly what the CLI worker does (rich text, or JSON lines), so the per-job
    # start/end log lines cost what they cost in production.
    from queuetopia_cli.logs import setup_logging

    setup_logging(False, "json" if mode == "json" else "text")


def _announce_ready(worker: object, path: Path, timeout: float = 60.0) -> None:
    """Write `path` once the worker's listener is connected (its public
    `listener_healthy`), or after a grace period when the engine does not say."""
    if not hasattr(type(worker), "listener_healthy"):
        time.sleep(1.0)
        path.write_text(str(os.getpid()))
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not getattr(worker, "listener_healthy", False):
        time.sleep(0.01)
    path.write_text(str(os.getpid()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--log-mode", choices=["cli", "json", "off"], default="cli")
    args = parser.parse_args()
    _setup_logging(args.log_mode)

    from bench.apps import LOG_ENV, RUNS, topia

    worker = topia.worker(concurrency=args.concurrency, shutdown_timeout=30.0)
    threading.Thread(target=_announce_ready, args=(worker, args.ready), daemon=True).start()
    worker.run()
    path = os.environ.get(LOG_ENV)
    if path:
        RUNS.dump(path)
    topia.close()


if __name__ == "__main__":
    main()
