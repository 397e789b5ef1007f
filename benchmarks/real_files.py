"""Three real file layouts through `tfcompress run`, as a new user would try them.

Generates, with a planted signal so AUC means something:

1. a Criteo-like CSV: label, 13 numeric columns I1..I13 (integers, ~10% missing) and 26
   categorical columns C1..C26 (hex strings, some missing);
2. an ad-click log (TalkingData layout): ip, app, device, os, channel integer ids, a
   ``click_time`` timestamp, a post-click ``attributed_time`` (set only for clicks: a leak) and
   the label ``is_attributed``;
3. a MovieLens ``u.data`` (tab-separated user, item, rating, timestamp).

Each runs twice through the CLI as a subprocess (`tfcompress run RECIPE`): the ad-click log
first as given (the leak warning shows) and then with ``drop = ["attributed_time"]``. It prints
what the CLI printed (the data summary, the stage and export tables) and, from ``report.json``,
the AUC of the float and the int8 TFLite exports on the whole test split.

Run it from the repository root (a few minutes on 2 CPU cores):

    python benchmarks/real_files.py [--rows 30000] [--out /tmp/real_files]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def criteo_csv(path: Path, rows: int, rng: np.random.Generator) -> None:
    """13 numeric (integers, 10% missing) + 26 hex categorical columns; label from a few."""
    numeric = rng.poisson(lam=rng.uniform(1, 30, size=13), size=(rows, 13)).astype(float)
    vocab = rng.integers(20, 3000, size=26)
    cats = np.stack([rng.zipf(1.3, size=rows) % v for v in vocab], axis=1)
    effect = [rng.normal(0, 0.8, size=v) for v in vocab]
    logit = (
        -1.3
        + 0.08 * (numeric[:, 0] - numeric[:, 0].mean())
        - 0.05 * (numeric[:, 3] - numeric[:, 3].mean())
    )
    for j in (0, 2, 5, 9, 14):
        logit = logit + effect[j][cats[:, j]]
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    missing_num = rng.random((rows, 13)) < 0.1
    missing_cat = rng.random((rows, 26)) < 0.05
    with open(path, "w") as f:
        f.write(
            ",".join(["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)])
            + "\n"
        )
        for r in range(rows):
            nums = ["" if missing_num[r, i] else str(int(numeric[r, i])) for i in range(13)]
            cs = [
                "" if missing_cat[r, j] else f"{(cats[r, j] * 2654435761 + j) % 2**32:08x}"
                for j in range(26)
            ]
            f.write(",".join([str(label[r]), *nums, *cs]) + "\n")


def ad_click_log(path: Path, rows: int, rng: np.random.Generator) -> None:
    """TalkingData-like: id columns, a click time, a post-click attributed_time (leak)."""
    ip = rng.integers(1, 60_000, size=rows)
    app = rng.zipf(1.5, size=rows) % 300
    device = rng.zipf(2.0, size=rows) % 100
    os_ = rng.zipf(1.6, size=rows) % 200
    channel = rng.integers(100, 500, size=rows)
    start = dt.datetime(2017, 11, 6, 14, 0, 0)
    seconds = np.sort(rng.integers(0, 4 * 86_400, size=rows))
    hour = ((seconds // 3600) + 14) % 24
    app_effect = rng.normal(0, 1.2, size=300)
    channel_effect = rng.normal(0, 0.8, size=500)
    logit = -2.2 + app_effect[app] + channel_effect[channel] + 0.6 * ((hour >= 9) & (hour < 13))
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    with open(path, "w") as f:
        f.write("ip,app,device,os,channel,click_time,attributed_time,is_attributed\n")
        for r in range(rows):
            click = start + dt.timedelta(seconds=int(seconds[r]))
            attributed = (
                click + dt.timedelta(seconds=int(rng.integers(5, 3600))) if label[r] else None
            )
            f.write(
                f"{ip[r]},{app[r]},{device[r]},{os_[r]},{channel[r]},"
                f"{click:%Y-%m-%d %H:%M:%S},"
                f"{'' if attributed is None else f'{attributed:%Y-%m-%d %H:%M:%S}'},"
                f"{label[r]}\n"
            )


def movielens_udata(path: Path, rows: int, rng: np.random.Generator) -> None:
    """user, item, rating, timestamp (tab-separated), ratings from latent factors."""
    users, items, dim = max(rows // 60, 50), max(rows // 40, 80), 8
    u, v = rng.normal(0, 1, (users, dim)), rng.normal(0, 1, (items, dim))
    popularity = 1 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    user = rng.integers(0, users, size=rows)
    item = rng.choice(items, size=rows, p=popularity)
    score = (u[user] * v[item]).sum(1) / np.sqrt(dim) + rng.normal(0, 0.5, rows)
    rating = np.clip(np.round(3.2 + 1.1 * score), 1, 5).astype(int)
    stamp = 874_724_710 + np.sort(rng.integers(0, 200 * 86_400, size=rows))
    with open(path, "w") as f:
        for r in range(rows):
            f.write(f"{user[r] + 1}\t{item[r] + 1}\t{rating[r]}\t{stamp[r]}\n")


def recipe(name: str, data: str) -> str:
    return f"""name = "{name}"
seed = 0

[data]
{data}

[model]
name = "dcn"
size = "student"
epochs = 4
learning_rate = 0.003
patience = 2

[[stages]]
kind = "quantize"
epochs = 1
learning_rate = 0.0005

[export]
tflite = ["float", "int8"]
saved_model = false

[benchmark]
batch_sizes = [256]
repeats = 5
"""


def run(recipe_path: Path, out: Path) -> tuple[int, str, float]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfcompress.cli",
            "run",
            str(recipe_path),
            "--out",
            str(out),
            "--no-resume",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    return proc.returncode, proc.stdout, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tfcompress_real_files"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = args.out / "files"
    files.mkdir(exist_ok=True)
    criteo_csv(files / "criteo_like.csv", args.rows, rng)
    ad_click_log(files / "ad_clicks.csv", args.rows, rng)
    movielens_udata(files / "u.data", args.rows, rng)
    cases = {
        "criteo_like": f'path = "{files / "criteo_like.csv"}"\nlabel = "label"\n'
        'numeric_fill = "mean"',
        "ad_clicks_as_given": f'path = "{files / "ad_clicks.csv"}"\nlabel = "is_attributed"',
        "ad_clicks": f'path = "{files / "ad_clicks.csv"}"\nlabel = "is_attributed"\n'
        'drop = ["attributed_time"]\nsplit_mode = "time"\n'
        'time_column = "click_time"',
        "movielens": f'path = "{files / "u.data"}"\nmin_rating = 4\nnegatives = 4\n'
        'split_mode = "time"',
    }
    summary = []
    for name, data in cases.items():
        path = args.out / f"{name}.toml"
        path.write_text(recipe(name, data))
        code, output, seconds = run(path, args.out / "runs")
        print(f"\n{'=' * 100}\n$ tfcompress run {path}   (exit {code}, {seconds:.0f} s)\n")
        print(output[-6000:])
        report = args.out / "runs" / name / "report.json"
        aucs = {}
        if code == 0 and report.is_file():
            rows = json.loads(report.read_text())["benchmark"]["rows"]
            aucs = {row["name"]: row["quality"].get("auc") for row in rows}
        summary.append((name, code, aucs))
    print(f"\n{'=' * 100}\nAUC on the whole test split, per exported variant:")
    for name, code, aucs in summary:
        print(
            f"  {name:20s} exit {code}  "
            + "  ".join(f"{k}: {v:.4f}" for k, v in aucs.items() if v is not None)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
