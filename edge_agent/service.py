"""``edge-agent``: the command line that runs a lane as a service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from edge_agent.app import LaneAgent
from edge_agent.config import load_config
from edge_agent.errors import ConfigError, EdgeAgentError

log = logging.getLogger("edge_agent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-agent", description="Run one gate lane.")
    parser.add_argument("--config", required=True, type=Path, help="the lane's TOML file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 2
    agent = LaneAgent(config)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    try:
        agent.run()
    except EdgeAgentError as exc:
        log.error("edge-agent stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
