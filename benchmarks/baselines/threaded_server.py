"""The classic thread-per-client line server from the course, kept as a reference point.

This is deliberately the plain version a student writes first: one thread per client, a
shared list of clients guarded by a lock, buffered `makefile` reads and one write + flush per
line. Every line comes back in CAPITALS; a line containing CLOSE SOCKET is answered and then
that connection is closed. No optimisation on purpose: `benchmarks/line_echo.py` measures
tinyboard against it (DESIGN.md §7).

    python benchmarks/baselines/threaded_server.py --port 0
    listening on 127.0.0.1:PORT

It serves until SIGTERM or Ctrl+C.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

CLOSE = "CLOSE SOCKET"


@dataclass
class ClientInfo:
    sock: socket.socket
    out: BinaryIO
    address: tuple[str, int]
    since: float


clients: list[ClientInfo] = []
clients_lock = threading.Lock()


def handle(sock: socket.socket, address: tuple[str, int]) -> None:
    """Serve one client until it goes away or sends CLOSE SOCKET."""
    inp = sock.makefile("rb")
    out = sock.makefile("wb")
    me = ClientInfo(sock, out, address, time.time())
    with clients_lock:
        clients.append(me)
    try:
        while True:
            line = inp.readline()
            if not line:
                break
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            out.write((text.upper() + "\n").encode())
            out.flush()
            if CLOSE in text:
                break
    except OSError:
        pass
    finally:
        with clients_lock:
            clients.remove(me)
        for f in (inp, out):
            with contextlib.suppress(OSError):
                f.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Thread-per-client CAPITALS echo server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=12000, help="port, 0 = any free (12000)")
    args = parser.parse_args(argv)

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen(1024)
    host, port = server.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            sock, address = server.accept()
            thread = threading.Thread(target=handle, args=(sock, address), daemon=True)
            thread.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        with clients_lock:
            for c in clients:
                with contextlib.suppress(OSError):
                    c.sock.shutdown(socket.SHUT_RDWR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
