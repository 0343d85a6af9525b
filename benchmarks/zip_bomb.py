"""Zip bombs against POST /v1/code: status, bytes written, server CPU, and a well-behaved
client's submission p99 while bombs arrive.

The control plane runs as `raydc server` pointed at no Ray (an unreachable address, so
nothing but the API and SQLite runs), default limits (64 MiB body, 512 MiB unpacked).
Bombs, each a few MB on the wire, written member by member here so the declared sizes can
lie: `honest_2gib` (one member of 2 GiB of zeros, declared truthfully), `ratio_510mib` (the
issue's case: 510 MiB of zeros, within the unpacked limit, sent 4 times), `lying_2gib`
(2 GiB of zeros declaring 1 MiB, with the CRC of that first MiB). Nested zips (42.zip) are
not a threat here: an inner zip is stored as a file, never opened. Prints JSON.
Targets (issue #18): each refused within 1 s of server CPU; p99 <= 2x baseline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

from _harness import ADMIN_TOKEN, ServerProcess, load, post_request

MiB = 1024 * 1024
SPEC = {
    "kind": "train",
    "name": "bench",
    "code": {"app": "sentiment"},
    "entrypoint": "sentiment.train:train_loop",
    "resources": {"workers": {"min": 1, "max": 1}, "cpus_per_worker": 1},
}


def deflated_zeros(size: int) -> tuple[bytes, int]:
    """`size` zeros, raw-deflated in 1 MiB steps (never all in memory); and their CRC."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, crc, parts = bytes(MiB), 0, []
    for _ in range(size // MiB):
        parts.append(packer.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(packer.flush())
    return b"".join(parts), crc


def one_member_zip(name: str, packed: bytes, crc: int, declared: int) -> bytes:
    """A deflated one-member zip whose headers say what we like about its size."""
    raw = name.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(packed),
                        declared, len(raw), 0) + raw  # fmt: skip
    mode = 0o644 << 16
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 0x314, 20, 0, 8, 0, 0x21, crc,
                          len(packed), declared, len(raw), 0, 0, 0, 0, mode, 0) + raw  # fmt: skip
    start = len(local) + len(packed)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), start, 0)
    return local + packed + central + end


def bombs() -> dict[str, tuple[bytes, int]]:
    """name -> (zip, times it is sent)."""
    packed_2g, crc_2g = deflated_zeros(2048 * MiB)
    packed_510, crc_510 = deflated_zeros(510 * MiB)
    first_mib_crc = zlib.crc32(bytes(MiB))
    return {
        "honest_2gib": (one_member_zip("zeros.bin", packed_2g, crc_2g, 2048 * MiB), 1),
        "ratio_510mib": (one_member_zip("zeros.bin", packed_510, crc_510, 510 * MiB), 4),
        "lying_2gib": (one_member_zip("zeros.bin", packed_2g, first_mib_crc, MiB), 1),
    }


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_bytes(directory: Path) -> int:
    if not directory.exists():
        return 0
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def upload(url: str, data: bytes) -> int:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/zip"}
    return httpx.post(f"{url}/v1/code", content=data, headers=headers, timeout=600).status_code


def bomber(url: str, zips: list[bytes], stop: Any, sent: Any, per_s: float) -> None:
    while not stop.is_set():
        for data in zips:
            started = time.monotonic()
            upload(url, data)
            with sent.get_lock():
                sent.value += 1
            if per_s > 0:
                time.sleep(max(0.0, 1 / per_s - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--bombs-per-s", type=float, default=0.0, help="0 = back to back")
    args = parser.parse_args()
    made = bombs()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        server = ServerProcess(home, RAYDC_RAY_ADDRESS="http://127.0.0.1:9",
                               RAYDC_ADMISSION_PAUSED="true")  # fmt: skip
        pid = server.process.pid
        try:
            request = post_request("/v1/jobs", SPEC, ADMIN_TOKEN)
            load(server.port, request, args.clients, 2.0)  # warm up
            baseline = load(server.port, request, args.clients, args.seconds)
            for name, (data, times) in made.items():
                before_cpu, before_disk = cpu_s(pid), disk_bytes(home / "code")
                statuses = [upload(server.url, data) for _ in range(times)]
                results[name] = {
                    "zip_bytes": len(data), "uploads": times, "statuses": statuses,
                    "bytes_written": disk_bytes(home / "code") - before_disk,
                    "server_cpu_s_per_upload": round((cpu_s(pid) - before_cpu) / times, 3),
                }  # fmt: skip
            # The well-behaved client again, while a separate process (no shared GIL with
            # the load generator) sends one bomb after another, back to back.
            stop = multiprocessing.Event()
            sent = multiprocessing.Value("i", 0)
            zips = [data for data, _ in made.values()]
            attacker = multiprocessing.Process(
                target=bomber,
                args=(server.url, zips, stop, sent, args.bombs_per_s),
            )
            attacker.start()
            under_attack = load(server.port, request, args.clients, args.seconds)
            stop.set()
            attacker.join()
        finally:
            server.stop()
    print(json.dumps({
        "benchmark": "zip_bomb", "database": "sqlite", "ray": "none",
        "bombs": results,
        "well_behaved": {
            "clients": args.clients, "bombs_per_s": args.bombs_per_s or "back to back",
            "baseline_p99_ms": baseline["p99_ms"], "under_attack_p99_ms": under_attack["p99_ms"],
            "p99_ratio": round(under_attack["p99_ms"] / baseline["p99_ms"], 2),
            "baseline_requests_per_s": baseline["requests_per_s"],
            "under_attack_requests_per_s": under_attack["requests_per_s"],
            "bombs_sent_meanwhile": sent.value,
            "under_attack_statuses": under_attack["statuses"],
        },
        "target": {"server_cpu_s_per_upload": 1.0, "p99_ratio": 2.0},
        "at": time.strftime("%Y-%m-%d"),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
