"""Entry point of one reward service.

    python -m services.reward --scorer accuracy --port 0 reward.verify_timeout_s=3 reward.token=s3cret

Trailing `key=value` arguments are Hydra overrides of the r1forge config tree; the service uses
`cfg.reward`. Once listening, it writes one line to stdout, which launchers parse for the port:

    REWARD_SERVICE_READY name=accuracy address=127.0.0.1:43117

That line goes through `sys.stdout` on purpose (it is a machine-read protocol line, not a log); logs
go to stderr. SIGTERM or SIGINT drains in-flight calls for `--grace-s` seconds, then stops the
verifier processes and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from services.config_loader import load_config
from services.reward.scorer import SCORER_NAMES, make_scorer
from services.reward.server import build_server, ready_line
from services.transport.grpc_utils import format_address

logger = logging.getLogger("services.reward")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.reward", description="Run one reward service.")
    parser.add_argument("--scorer", required=True, choices=SCORER_NAMES, help="scorer this service runs")
    parser.add_argument("--host", default=None, help="interface to bind (default: reward.host)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--grace-s", type=float, default=5.0, help="seconds in-flight calls get at shutdown")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. reward.verify_timeout_s=3")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.overrides)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = args.host or cfg.reward.host
    scorer = make_scorer(args.scorer, cfg.reward)
    server, port = build_server(scorer, cfg.reward, host=host, port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    address = format_address(host, port)
    logger.info("reward service %s listening on %s", scorer.name, address)
    sys.stdout.write(ready_line(scorer.name, address) + "\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    logger.info("reward service %s stopping (grace %gs)", scorer.name, args.grace_s)
    server.stop(args.grace_s).wait()
    scorer.close()
    logger.info("reward service %s stopped", scorer.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
