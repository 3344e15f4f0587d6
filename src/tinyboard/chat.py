"""`tinyboard chat`: the course's chat client (milestones 0–1), lock-step and line based.

Each line read from stdin is sent; the server's one-line reply is printed before the next
line is read, so piped input gets its replies in order. A line containing CLOSE SOCKET ends
the session after its reply.
"""

from __future__ import annotations

import socket
import sys
from typing import TextIO

CLOSE = "CLOSE SOCKET"
CONNECT_TIMEOUT = 10.0


def chat(host: str, port: int, *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Run a chat session; returns the process exit code (0 ok, 1 server gone, 2 unreachable)."""
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"cannot reach tinyboard at {host}:{port}: {reason}. "
            "Is `tinyboard serve` running there? (change the port with --port)",
            file=stderr,
        )
        return 2
    sock.settimeout(None)
    interactive = stdin.isatty()
    if interactive:
        print(f"connected to {host}:{port}; type a message, or CLOSE SOCKET to end", file=stdout)
    with sock, sock.makefile("rb") as replies:
        while True:
            line = _next_line(stdin, interactive)
            if line is None:
                return 0
            try:
                sock.sendall(line.encode() + b"\n")
                reply = replies.readline()
            except OSError as exc:
                print(f"the server went away: {exc.strerror or exc}", file=stderr)
                return 1
            if not reply:
                print("the server closed the connection", file=stderr)
                return 1
            print(reply.decode(errors="replace").rstrip("\r\n"), file=stdout, flush=True)
            if CLOSE in line:
                return 0


def _next_line(stdin: TextIO, interactive: bool) -> str | None:
    """The next line to send, or None at end of input (or Ctrl+C / Ctrl+D at the prompt)."""
    if interactive:
        try:
            return input("> ") if stdin is sys.stdin else stdin.readline().rstrip("\r\n")
        except (EOFError, KeyboardInterrupt):
            return None
    line = stdin.readline()
    return line.rstrip("\r\n") if line else None
