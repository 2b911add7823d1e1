"""Command line: ``python -m scripts.services install|start|stop|status --profile P``."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence

from scripts.services import __doc__ as package_doc
from scripts.services.install import install
from scripts.services.process import HOST, ServiceError
from scripts.services.stack import (
    PROFILES,
    Profile,
    Stack,
    session_owner_alive,
    session_roots,
)

logger = logging.getLogger(__name__)


def stop_sessions(profile: Profile) -> None:
    """Stop the servers of test sessions whose pytest process has exited."""
    for root in session_roots(profile):
        if session_owner_alive(root):
            logger.info("leaving %s running: its pytest process is alive", root)
            continue
        Stack(profile, root=root).stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.services", description=(package_doc or "").splitlines()[0]
    )
    parser.add_argument("command", choices=["install", "start", "stop", "status"])
    parser.add_argument(
        "--profile", choices=PROFILES, default="run", help="server set (default: run)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        if args.command == "install":
            install()
            return 0
        stack = Stack(args.profile)
        if args.command == "start":
            stack.start()
            print(
                f"redis    {stack.redis.url}\nmongodb  {stack.ferretdb.url}\n"
                f"imap     {HOST}:{stack.dovecot.port} imaps {HOST}:{stack.dovecot.imaps_port}"
                f" (cafile {stack.dovecot.cafile})"
            )
        elif args.command == "stop":
            stop_sessions(args.profile)
            stack.stop()
        else:
            stacks = [stack] + [
                Stack(args.profile, root=root) for root in session_roots(args.profile)
            ]
            for each in stacks:
                print("\n".join(each.status()))
    except ServiceError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
