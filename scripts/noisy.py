#!/usr/bin/env python3
"""Noisy neighbour: tenant B's stat/read throughput and p99 latency, alone and while tenant A
runs 4 writers and a `tar x` loop on its own mount. Called by scripts/bench.sh."""

import argparse
import os
import shutil
import statistics
import subprocess
import threading
import time


def b_workload(root, seconds):
    """stat + open + read + close over a small tree, as fast as it goes; returns (ops/s, p99 ms)."""
    files = [os.path.join(root, "b", f"f{i:03d}") for i in range(200)]
    lat = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        p = files[i % len(files)]
        t = time.perf_counter()
        os.stat(p)
        with open(p, "rb") as f:
            f.read()
        lat.append(time.perf_counter() - t)
        i += 1
    lat.sort()
    return len(lat) / seconds, lat[int(len(lat) * 0.99)] * 1000


def a_noise(root, tarball, stop):
    def writer(n):
        buf = b"\x5a" * (1 << 20)
        while not stop.is_set():
            path = os.path.join(root, f"w{n}")
            with open(path, "wb") as f:
                for _ in range(64):
                    if stop.is_set():
                        break
                    f.write(buf)
            os.unlink(path)

    def untar():
        k = 0
        while not stop.is_set():
            d = os.path.join(root, f"t{k % 2}")
            shutil.rmtree(d, ignore_errors=True)
            os.mkdir(d)
            subprocess.run(["tar", "-xf", tarball, "-C", d], check=False)
            k += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)] + [threading.Thread(target=untar)]
    for t in threads:
        t.start()
    return threads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="tenant A's mount (the noisy one)")
    ap.add_argument("--b", required=True, help="tenant B's mount (the one measured)")
    ap.add_argument("--tarball", required=True)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    os.makedirs(os.path.join(args.b, "b"), exist_ok=True)
    for i in range(200):
        with open(os.path.join(args.b, "b", f"f{i:03d}"), "wb") as f:
            f.write(os.urandom(4096))
    solo_ops, solo_p99 = b_workload(args.b, args.seconds)
    stop = threading.Event()
    threads = a_noise(args.a, args.tarball, stop)
    time.sleep(1)
    noisy_ops, noisy_p99 = b_workload(args.b, args.seconds)
    stop.set()
    for t in threads:
        t.join()
    print(f"\nnoisy neighbour ({args.seconds:.0f} s each): tenant B's stat+read loop")
    print(f"| B alone          | {solo_ops:8.0f} ops/s | p99 {solo_p99:6.2f} ms |")
    print(f"| B beside noisy A | {noisy_ops:8.0f} ops/s | p99 {noisy_p99:6.2f} ms |")
    print(f"B keeps {noisy_ops / solo_ops:.0%} of its solo throughput (target: at least 40%)")


if __name__ == "__main__":
    main()
