"""`mnistctl serve` under load, beside a naive endpoint (benchmarks/naive_serve.py) on the same
uvicorn in the same run, both driven by a real load generator (`hey`; Debian: apt-get install hey).

    python benchmarks/serve_load.py           # about 3 minutes on 2 CPU cores; writes benchmarks/serve-KIND.json
    python benchmarks/serve_load.py --quick   # a smoke run: few requests, no soak (CI runs it, and
                                              # checks only that no request failed)

Per payload (the page's canvas PNG, the 0.2-megapixel photo) and concurrency (1 and 16 keep-alive
clients): requests per second, p50 and p99 latency, and every status other than 200 counted as a
failure. Then a soak: 16 clients on the canvas for 60 s, the server's memory (all its processes)
at its start and end. The load generator runs on the same cores as the servers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.payloads import PHOTO, canvas_png  # noqa: E402
from benchmarks.run import machine, machine_kind, row, side_benchmark  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], url: str) -> subprocess.Popen:
    """A server process, once its URL answers."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc
        except urllib.error.HTTPError:  # it answers (an older version without that path)
            return proc
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"could not start {' '.join(cmd)}: {exc}\n{proc.stderr.read()[-2000:]}") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def hey(url: str, payload: Path, kind: str, clients: int, requests: int | None = None,
        seconds: int | None = None) -> dict:
    """One `hey` run: requests/s, p50 and p99 (ms), responses by status, and errors."""
    amount = ["-z", f"{seconds}s"] if seconds else ["-n", str(requests)]
    out = subprocess.run(["hey", *amount, "-c", str(clients), "-m", "POST", "-T", kind, "-D", str(payload), url],
                         capture_output=True, text=True, check=True).stdout
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors = out.split("Error distribution:", 1)[1].strip() if "Error distribution:" in out else ""
    rps, p50, p99 = (re.search(pattern, out) for pattern in (
        r"Requests/sec:\s+([\d.]+)", r"50% in ([\d.]+) secs", r"99% in ([\d.]+) secs"))
    p99 = p99 or re.search(r"Slowest:\s+([\d.]+) secs", out)  # hey leaves out its 99% line for few requests
    if rps is None or p50 is None or p99 is None:
        raise SystemExit(f"hey gave no figures for {url}:\n{out[-2000:]}")
    return {"rps": float(rps.group(1)), "p50": 1000 * float(p50.group(1)), "p99": 1000 * float(p99.group(1)),
            "statuses": statuses, "ok": statuses.get(200, 0),
            "failed": sum(n for code, n in statuses.items() if code != 200)
            + sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", errors, re.M)),
            "errors": errors[:500]}


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def bench(args: argparse.Namespace) -> dict:
    if shutil.which("hey") is None:
        raise SystemExit("the load generator `hey` is missing: apt-get install hey")
    scratch = Path(tempfile.mkdtemp(prefix="mnistctl-load-"))
    payloads = [("canvas PNG", scratch / "canvas.png", "image/png"), ("photo", scratch / "photo.jpg", "image/jpeg")]
    payloads[0][1].write_bytes(canvas_png("5"))
    payloads[1][1].write_bytes(PHOTO.read_bytes())
    ours_port, naive_port = free_port(), free_port()
    ours = start([sys.executable, "-m", "mnistctl", "serve", "--port", str(ours_port), "--no-access-log"],
                 f"http://127.0.0.1:{ours_port}/ready")
    naive = start([sys.executable, "-m", "uvicorn", "benchmarks.naive_serve:app", "--port", str(naive_port),
                   "--log-level", "warning", "--no-access-log"], f"http://127.0.0.1:{naive_port}/docs")
    rows, failures = [], 0
    try:
        for name, path, kind in payloads:
            for clients in (1, 16):
                n = (480 if args.quick else (10_000 if clients == 16 and name == "canvas PNG" else 2_000))
                if name == "photo":
                    n //= 2
                got = hey(f"http://127.0.0.1:{ours_port}/predict", path, kind, clients, n)
                floor = hey(f"http://127.0.0.1:{naive_port}/predict", path, kind, clients, n)
                failures += got["failed"]
                target = {("canvas PNG", 16): ">= 350 req/s, p99 <= 100 ms", ("photo", 16): ">= 150 req/s"}.get(
                    (name, clients), "")
                rows.append(row(f"POST /predict, {name}, {clients} client{'s' if clients > 1 else ''}", got["rps"],
                                "req/s", "naive endpoint (decode, invert, resize, one model run)", floor["rps"],
                                higher_is_better=True, target=target, threads=1,
                                note=f"p50 {got['p50']:.1f} ms, p99 {got['p99']:.1f} ms; naive p50 {floor['p50']:.1f}, "
                                     f"p99 {floor['p99']:.1f} ms; {got['ok']:,} answered, {got['failed']} failed"
                                     + (f" ({got['errors']})" if got["errors"] else "")) | {
                    "p50_ms": got["p50"], "p99_ms": got["p99"], "failed": got["failed"], "requests": n})
        if not args.quick:
            before = tree_rss(ours.pid)
            soak = hey(f"http://127.0.0.1:{ours_port}/predict", payloads[0][1], "image/png", 16, seconds=60)
            after = tree_rss(ours.pid)
            failures += soak["failed"]
            rows.append(row("memory of serve (all processes) after a 60 s soak, 16 clients", after / 2**20, "MiB",
                            "the same before the soak", before / 2**20, higher_is_better=False, target="flat",
                            threads=1, note=f"{soak['ok']:,} requests at {soak['rps']:.0f} req/s, "
                                            f"{soak['failed']} failed") | {"failed": soak["failed"]})
    finally:
        stop(ours)
        stop(naive)
    m = machine()
    return {"machine": m, "kind": machine_kind(m), "quick": args.quick, "failures": failures, "results": rows}


def main(argv: list[str] | None = None) -> None:
    doc = side_benchmark(__doc__, "serve", "a smoke run: 480 requests a case (240 of the photo), no soak", bench, argv)
    if doc["failures"]:
        raise SystemExit(f"{doc['failures']} requests failed")


if __name__ == "__main__":
    main()
