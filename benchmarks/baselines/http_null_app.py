"""A FastAPI app whose device telemetry POST stores nothing: the floor for tinyboard's HTTP API.

`benchmarks/http_and_queries.py` measures tinyboard's `POST /api/v1/{token}/telemetry`
against this app with the same client in the same run. It has the same route, reads the
whole body and answers an empty 200, without parsing, looking up the token or storing
anything, so the difference is what tinyboard does per request (token lookup, JSON parsing,
group commit, fsync). uvicorn gets the settings tinyboard's embedded server uses
(`src/tinyboard/web/server.py`): httptools, uvloop, log level warning, no access log, no
lifespan, default keep-alive.

    python benchmarks/baselines/http_null_app.py --port 0
    listening on 127.0.0.1:PORT

It serves until SIGTERM or Ctrl+C: uvicorn's own handlers stop it gracefully, then re-raise
the signal, so the exit status after SIGTERM is -15.
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI(title="null telemetry sink")


@app.post("/api/v1/{token}/telemetry")
async def telemetry(token: str, request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    print(f"listening on {host}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
