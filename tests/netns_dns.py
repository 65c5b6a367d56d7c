"""Run a command in a network namespace of its own (loopback only) whose DNS server logs every
query: what a program would try to contact, without letting it reach anything. Needs root
(``unshare``, ``mount --bind``); used by the tests of "nothing leaves the machine".

    python tests/netns_dns.py LOG -- COMMAND ...    # inside: lo up, resolv.conf -> 127.0.0.1
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _name(packet: bytes) -> str:
    """The query name of a DNS request (labels from byte 12)."""
    labels, i = [], 12
    while i < len(packet) and packet[i]:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ".".join(labels)


def serve_dns(log: Path, stop: threading.Event) -> None:
    """Log each query's name and answer it with 'no such name' (so that nothing waits)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 53))
        s.settimeout(0.2)
        with log.open("a") as out:
            while not stop.is_set():
                try:
                    packet, peer = s.recvfrom(4096)
                except TimeoutError:
                    continue
                out.write(_name(packet) + "\n")
                out.flush()
                if len(packet) >= 12:  # header: same id, a response, NXDOMAIN
                    s.sendto(packet[:2] + bytes([0x81, 0x83]) + packet[4:], peer)


def inside(log: Path, command: list[str]) -> int:
    """In the namespace: start the logger, make one control query (so a test knows it logs), run."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    stop = threading.Event()
    threading.Thread(target=serve_dns, args=(log, stop), daemon=True).start()
    time.sleep(0.3)
    try:
        socket.getaddrinfo("control.query.invalid", 80)
    except OSError:
        pass
    try:
        return subprocess.run(command).returncode
    finally:
        time.sleep(0.5)
        stop.set()


def main() -> int:
    log, rest = Path(sys.argv[1]), sys.argv[2:]
    if rest[:1] == ["--inside"]:
        return inside(log, rest[2:])
    with tempfile.NamedTemporaryFile("w", suffix=".resolv.conf", delete=False) as f:
        f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    script = (f"mount --bind {f.name} /etc/resolv.conf && exec {shlex.quote(sys.executable)} "
              f"{shlex.quote(str(Path(__file__).resolve()))} {shlex.quote(str(log))} --inside -- "
              + " ".join(shlex.quote(a) for a in rest[1:]))
    return subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script]).returncode


if __name__ == "__main__":
    sys.exit(main())
