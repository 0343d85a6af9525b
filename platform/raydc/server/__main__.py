"""``python -m raydc.server [--host H] [--port P]``: what ``raydc server`` runs."""

from __future__ import annotations

import argparse

from raydc.server.main import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="raydc server", description="run the control plane")
    parser.add_argument("--host", help="bind address (RAYDC_HOST)")
    parser.add_argument("--port", type=int, help="port (RAYDC_PORT)")
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
