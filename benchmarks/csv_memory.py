"""Memory of loading a large CSV: a >= 2 GB Criteo-like file through ``tfcompress.data``.

Writes a Criteo-like TSV (label, 13 integer counts I1..I13, 26 hex categories C1..C26, with
empty cells; no header row) of at least ``--gb`` GB into a temporary directory, then loads it
in a fresh process with ``load_csv(..., delimiter="\\t", header=[...], numeric_fill="mean")``
(default ``hash_threshold``: columns with more than 100,000 distinct values are hashed) and
prints the file size, rows, load time, the process's resident memory before the load (after
importing TensorFlow) and its peak (``resource.getrusage``), and the bytes of the loaded arrays.
The file is deleted at the end (``--keep`` keeps it).

Usage:
    python benchmarks/csv_memory.py [--gb 2.0] [--seed 0] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

I_COLS = [f"I{i}" for i in range(1, 14)]
C_COLS = [f"C{i}" for i in range(1, 27)]
HEADER = ["label", *I_COLS, *C_COLS]
CARDINALITY = [
    3,
    4,
    10,
    14,
    27,
    93,
    105,
    305,
    553,
    1460,
    2173,
    3194,
    5652,
    12517,
    14992,
    27000,
    93145,
    142572,
    286181,
    500000,
    1000000,
    2000000,
    3000000,
    4,
    15,
    300,
]
BLOCK = 200_000


def write_criteo(path: Path, gigabytes: float, seed: int) -> int:
    """Write blocks of Criteo-like rows until the file holds ``gigabytes``; returns the rows."""
    rng = np.random.default_rng(seed)
    numbers = np.array([str(k) for k in range(100_000)], dtype=object)
    vocab = [
        np.array([f"{h:08x}" for h in rng.integers(0, 2**32, size=c)], dtype=object)
        for c in CARDINALITY
    ]
    i_missing = rng.uniform(0.0, 0.4, size=13)
    c_missing = np.where(rng.random(26) < 0.4, rng.uniform(0.0, 0.4, size=26), 0.0)
    target = int(gigabytes * 1e9)
    rows = 0
    with open(path, "w", encoding="utf-8") as fh:
        while fh.tell() < target:
            cols = []
            logit = np.full(BLOCK, -1.5)
            for j in range(13):
                counts = np.minimum(rng.geometric(rng.uniform(0.02, 0.5), size=BLOCK) - 1, 99_999)
                logit += 0.05 * np.minimum(counts, 10) * (j < 3)
                cells = numbers[counts]
                cells[rng.random(BLOCK) < i_missing[j]] = ""
                cols.append(cells.tolist())
            for j, card in enumerate(CARDINALITY):
                pick = np.minimum((card * rng.random(BLOCK) ** 3).astype(np.int64), card - 1)
                cells = vocab[j][pick]
                cells[rng.random(BLOCK) < c_missing[j]] = ""
                cols.append(cells.tolist())
            label = (rng.random(BLOCK) < 1 / (1 + np.exp(-logit))).astype(np.int8)
            cols.insert(0, np.array(["0", "1"], dtype=object)[label].tolist())
            fh.write("\n".join("\t".join(row) for row in zip(*cols, strict=True)) + "\n")
            rows += BLOCK
    return rows


def load(path: str) -> dict:
    """Load the file (in this process) and measure."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import psutil

    from tfcompress.data import load_csv

    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    task = load_csv(
        path, label="label", delimiter="\t", header=HEADER, numeric_fill="mean", batch_size=4096
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    after = process.memory_info().rss
    arrays = sum(
        v.nbytes for split in task.info["arrays"].values() for v in (*split[0].values(), split[1])
    )
    batches = 0
    for _ in task.train.take(20):
        batches += 1
    hashed = sorted(task.info["hash_buckets"])
    return {
        "rows": task.info["rows"]["total"],
        "load_seconds": round(seconds, 1),
        "rss_before_load_bytes": before,
        "rss_after_load_bytes": after,
        "peak_rss_bytes": peak,
        "arrays_bytes": arrays,
        "hashed_columns": hashed,
        "train_batches_read": batches,
        "summary": str(task.summary()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="file size to write (GB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # the child process: load and report
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load)))
        return
    folder = Path(tempfile.mkdtemp(prefix="tfcompress_csv_memory_"))
    path = folder / "criteo_like.tsv"
    try:
        start = time.perf_counter()
        rows = write_criteo(path, args.gb, args.seed)
        size = path.stat().st_size
        print(
            f"wrote {path}: {size / 1e9:.2f} GB, {rows:,} rows in "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
        child = subprocess.run(
            [sys.executable, __file__, "--load", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        gib = 2**30
        print(result["summary"])
        print()
        print("| file | rows | load time | RSS before load | peak RSS | peak - before | arrays |")
        print("|---|---|---|---|---|---|---|")
        print(
            f"| {size / 1e9:.2f} GB | {result['rows']:,} | {result['load_seconds']:.0f} s | "
            f"{result['rss_before_load_bytes'] / gib:.2f} GiB | "
            f"{result['peak_rss_bytes'] / gib:.2f} GiB | "
            f"{(result['peak_rss_bytes'] - result['rss_before_load_bytes']) / gib:.2f} GiB | "
            f"{result['arrays_bytes'] / gib:.2f} GiB |"
        )
        print(f"hashed (> hash_threshold distinct values): {', '.join(result['hashed_columns'])}")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
            folder.rmdir()


if __name__ == "__main__":
    main()
