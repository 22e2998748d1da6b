#!/usr/bin/env python3
"""Runs one workload set against several directories, rounds interleaved, and prints medians
and ratios. Called by scripts/bench.sh, which sets up the targets."""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

FILES = int(os.environ.get("BENCH_FILES", "5000"))
SEQ_MB = int(os.environ.get("BENCH_SEQ_MB", "512"))
FIO_SECS = int(os.environ.get("BENCH_FIO_SECS", "5"))
FIO_MB = int(os.environ.get("BENCH_FIO_MB", "256"))
# Comma-separated words; only workloads whose name contains one of them run.
ONLY = [w for w in os.environ.get("BENCH_ONLY", "").split(",") if w]


def drop_caches():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def seq_write(d):
    buf = b"\xa5" * (1 << 20)
    path = os.path.join(d, "seq.bin")

    def run():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for _ in range(SEQ_MB):
            os.write(fd, buf)
        os.fsync(fd)
        os.close(fd)

    return timed(run)


def seq_read(d):
    path = os.path.join(d, "seq.bin")
    drop_caches()

    def run():
        fd = os.open(path, os.O_RDONLY)
        while os.read(fd, 1 << 20):
            pass
        os.close(fd)

    t = timed(run)
    os.unlink(path)
    return t


def names(d):
    return [os.path.join(d, "many", f"f{i:05d}") for i in range(FILES)]


def create(d):
    os.mkdir(os.path.join(d, "many"))

    def run():
        for p in names(d):
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))

    return timed(run)


def stat_cold(d):
    drop_caches()
    return timed(lambda: [os.stat(p) for p in names(d)])


def stat_warm(d):
    return timed(lambda: [os.stat(p) for p in names(d)])


def ls_l(d):
    return timed(lambda: subprocess.run(["ls", "-l", os.path.join(d, "many")], stdout=subprocess.DEVNULL, check=True))


def remove_all(paths, remove, parent):
    """Times removing every path, then their (now empty) parent."""

    def run():
        for p in paths:
            remove(p)
        os.rmdir(parent)

    return timed(run)


def unlink(d):
    return remove_all(names(d), os.unlink, os.path.join(d, "many"))


DIRS = FILES // 5


def dir_names(d):
    return [os.path.join(d, "dirs", f"d{i:05d}") for i in range(DIRS)]


def mkdirs(d):
    os.mkdir(os.path.join(d, "dirs"))
    return timed(lambda: [os.mkdir(p) for p in dir_names(d)])


def rmdirs(d):
    return remove_all(dir_names(d), os.rmdir, os.path.join(d, "dirs"))


def untar(d, tarball):
    dest = os.path.join(d, "tree")
    os.mkdir(dest)
    return timed(lambda: subprocess.run(["tar", "-xf", tarball, "-C", dest], check=True))


def grep_r(d):
    """Cold, as a first search over a fresh checkout is: names, attributes and content all
    come from the store, not from the kernel's caches."""
    dest = os.path.join(d, "tree")
    drop_caches()
    return timed(lambda: subprocess.run(["grep", "-r", "-c", "needle-not-there", dest], stdout=subprocess.DEVNULL))


def find_cold(d):
    """`find -printf` reads attributes with the names (readdirplus where a FUSE file system
    has it), where `stat_cold` looks each name up."""
    dest = os.path.join(d, "tree")
    drop_caches()
    return timed(lambda: subprocess.run(["find", dest, "-printf", "%s %i %m\n"], stdout=subprocess.DEVNULL, check=True))


def du_cold(d):
    dest = os.path.join(d, "tree")
    drop_caches()
    return timed(lambda: subprocess.run(["du", "-s", dest], stdout=subprocess.DEVNULL, check=True))


def rm_rf(d):
    dest = os.path.join(d, "tree")
    return timed(lambda: subprocess.run(["rm", "-rf", dest], check=True))


AGENT_FILES = int(os.environ.get("BENCH_AGENT_FILES", "10000"))


def agent(d):
    """What an AI agent's Python does with plain file I/O: writes a tree of small files,
    reads every one back, copies the tree, and removes both copies."""
    src = os.path.join(d, "agent")
    payload = [bytes([65 + i % 26]) * (200 + (i * 37) % 3800) for i in range(64)]

    def run():
        for i in range(AGENT_FILES):
            sub = os.path.join(src, f"d{i // 100:03d}")
            if i % 100 == 0:
                os.makedirs(sub)
            with open(os.path.join(sub, f"f{i:05d}.txt"), "wb") as f:
                f.write(payload[i % 64])
        total = 0
        for root, _, files in os.walk(src):
            for n in files:
                with open(os.path.join(root, n), "rb") as f:
                    total += len(f.read())
        shutil.copytree(src, src + "-copy")
        shutil.rmtree(src)
        shutil.rmtree(src + "-copy")
        assert total > 0

    return timed(run)


def rsync_in(d, work):
    """`rsync -a` of the untarred tree from the native disk into the target."""
    src = os.path.join(work, "rsync-src")
    if not os.path.isdir(src):
        os.mkdir(src)
        subprocess.run(["tar", "-xf", os.path.join(work, "tree.tar"), "-C", src], check=True)
    dest = os.path.join(d, "rsynced")
    t = timed(lambda: subprocess.run(["rsync", "-a", src + "/", dest + "/"], check=True))
    shutil.rmtree(dest)
    return t


def fio_layout(d):
    """One 256 MiB file of incompressible data, written and read once, that every fio job
    below shares: several writers on one file is what databases and logs do, and what a
    file system that serialises a file's writers shows worst."""
    path = os.path.join(d, "fio.dat")
    with open(path, "wb") as f:
        for _ in range(FIO_MB):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    return path


def fio(d, rw, jobs):
    path = os.path.join(d, "fio.dat")
    if not os.path.exists(path):
        fio_layout(d)
    os.sync()
    out = subprocess.run(
        ["fio", "--name=b", f"--filename={path}", f"--rw={rw}", "--bs=4k", f"--size={FIO_MB}M",
         f"--numjobs={jobs}", "--ioengine=psync", "--iodepth=1", "--direct=0", "--invalidate=0",
         "--time_based", f"--runtime={FIO_SECS}", "--group_reporting", "--output-format=json"],
        check=True, capture_output=True, text=True,
    )
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
    side = "read" if "read" in rw else "write"
    return job[side]["iops"]


def fio_cleanup(d):
    os.unlink(os.path.join(d, "fio.dat"))


def make_tarball(path):
    """About 2,400 small source-like files in nested folders, made once, reproducibly."""
    rng = random.Random(42)
    src = path + ".src"
    words = ["alpha", "beta", "fn", "let", "return", "struct", "impl", "match", "tenant", "inode"]
    for i in range(2438):
        sub = os.path.join(src, f"pkg{i % 40:02d}", f"mod{i % 7}")
        os.makedirs(sub, exist_ok=True)
        size = rng.choice([200, 800, 2000, 4000, 9000, 16000])
        text = " ".join(rng.choice(words) for _ in range(size // 6))
        with open(os.path.join(sub, f"file{i}.rs"), "w") as f:
            f.write(text[:size] + "\n")
    with tarfile.open(path, "w") as t:
        t.add(src, arcname="src")
    shutil.rmtree(src)


# (name, kind, runner): kind "time" is seconds (lower is better), "iops" is higher-better.
def workloads(tarball):
    return [
        ("seq write 512 MiB" if SEQ_MB == 512 else f"seq write {SEQ_MB} MiB", "time", seq_write),
        ("seq read 512 MiB" if SEQ_MB == 512 else f"seq read {SEQ_MB} MiB", "time", seq_read),
        (f"create {FILES} files", "time", create),
        (f"stat {FILES} files, cold", "time", stat_cold),
        (f"stat {FILES} files, warm", "time", stat_warm),
        (f"ls -l of {FILES}", "time", ls_l),
        (f"unlink {FILES}", "time", unlink),
        (f"mkdir {DIRS} dirs", "time", mkdirs),
        (f"rmdir {DIRS} dirs", "time", rmdirs),
        ("untar 2,438 files", "time", lambda d: untar(d, tarball)),
        ("grep -r over them, cold", "time", grep_r),
        ("find -printf over them, cold", "time", find_cold),
        ("du -s of them, cold", "time", du_cold),
        ("rm -rf of them", "time", rm_rf),
        (f"python agent, {AGENT_FILES} files", "time", agent),
        ("rsync -a of 2,438 files in", "time", lambda d: rsync_in(d, os.path.dirname(tarball))),
        # Reads first, on the freshly written file, as the shared harness does; all jobs share
        # one file. 1 job, then 4: their ratio is how a file's readers and writers scale.
        ("fio 4k randread, 1 job", "iops", lambda d: fio(d, "randread", 1)),
        ("fio 4k randread, 4 jobs", "iops", lambda d: fio(d, "randread", 4)),
        ("fio 4k randwrite, 1 job", "iops", lambda d: fio(d, "randwrite", 1)),
        ("fio 4k randwrite, 4 jobs", "iops", lambda d: (fio(d, "randwrite", 4), fio_cleanup(d))[0]),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True, help="NAME=DIR; the first is the baseline")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", required=True, help="a scratch directory on the native disk")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--compare", action="append", default=[], help="A/B: also print A's speed relative to B")
    args = ap.parse_args()
    targets = [t.split("=", 1) for t in args.target]
    tarball = os.path.join(args.work, "tree.tar")
    if not os.path.exists(tarball):
        make_tarball(tarball)
    wl = [w for w in workloads(tarball) if not ONLY or any(o in w[0] for o in ONLY)]
    results = {name: {t: [] for t, _ in targets} for name, _, _ in wl}
    for r in range(args.rounds):
        order = targets if r % 2 == 0 else list(reversed(targets))
        for tname, tdir in order:
            scratch = os.path.join(tdir, f"bench-{r}")
            os.mkdir(scratch)
            for name, _, fn in wl:
                results[name][tname].append(fn(scratch))
            shutil.rmtree(scratch)
            print(f"round {r + 1}/{args.rounds}: {tname} done", file=sys.stderr, flush=True)

    base = targets[0][0]
    names = [t for t, _ in targets]
    pairs = [tuple(c.split("/", 1)) for c in args.compare]
    header = ["workload"] + [f"{n}" for n in names] + [f"{n}/{base}" for n in names[1:]] + [f"{a}/{b}" for a, b in pairs]
    rows = []
    ratios = {k: [] for k in header[1 + len(names):]}
    for name, kind, _ in wl:
        med = {t: statistics.median(results[name][t]) for t in names}
        # Ratios are "times as fast as": >1 means faster.
        def ratio(a, b):
            if kind == "time":
                return med[b] / med[a] if med[a] > 0 else float("inf")
            return med[a] / med[b] if med[b] > 0 else float("inf")
        cells = [name] + [f"{med[t]:.3f}s" if kind == "time" else f"{med[t]:.0f} iops" for t in names]
        for n in names[1:]:
            v = ratio(n, base)
            ratios[f"{n}/{base}"].append(v)
            cells.append(f"{v:.2f}")
        for a, b in pairs:
            v = ratio(a, b)
            ratios[f"{a}/{b}"].append(v)
            cells.append(f"{v:.2f}")
        rows.append(cells)
    geo = ["geometric mean"] + [""] * len(names) + [f"{statistics.geometric_mean(v):.2f}" for v in ratios.values()]
    rows.append(geo)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    print(f"\n{args.rounds} rounds, interleaved; medians; ratios are speed relative to the named target (>1 is faster)\n")
    print(fmt(header))
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        print(fmt(r))
    for rw in ("randread", "randwrite"):
        one = [w for w, _, _ in wl if f"{rw}, 1 job" in w]
        four = [w for w, _, _ in wl if f"{rw}, 4 jobs" in w]
        if one and four:
            scale = ", ".join(
                f"{t} {statistics.median(results[four[0]][t]) / statistics.median(results[one[0]][t]):.2f}"
                for t in names
            )
            print(f"\nrandom {rw[4:]}s on one file, 4 jobs / 1 job (medians): {scale}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"raw": results, "table": [header] + rows}, f, indent=1)


if __name__ == "__main__":
    main()
