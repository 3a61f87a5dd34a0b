"""Loader throughput: augmented training crops per second, all augmentations on, as the training loader runs."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from facelm.dataset import LandmarkCrops, SeededBatches, default_teacher_sources, load_source, set_loader_threads
from facelm.errors import UserError
from facelm.paths import RUNS
from facelm.runs import provenance, write_json


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm loader-bench", add_help=add_help)
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--input-size", type=int, default=112, help="crop size (default: 112)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts to time (default: 0 1 2)")
    p.add_argument("--batches", type=int, default=40, help="timed batches of 64 per setting (default: 40)")
    p.add_argument("--json", type=Path, default=RUNS / "bench" / "loader.json", help="report (default: runs/bench/loader.json)")
    return p


def images_per_second(dataset: LandmarkCrops, workers: int, batches: int) -> float:
    set_loader_threads(workers)
    draws = RandomSampler(dataset, num_samples=64 * (batches + 1))  # as many passes as the timed batches need
    batches_drawn = SeededBatches(BatchSampler(draws, 64, drop_last=True), seed=0)
    loader = DataLoader(dataset, batch_sampler=batches_drawn, num_workers=workers, persistent_workers=workers > 0)
    iterator = iter(loader)
    next(iterator)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next(iterator)["head"])
    return seen / (time.perf_counter() - start)


def main(args: argparse.Namespace) -> dict:
    if args.data is None:
        raise UserError("no data: set DATA=/path/to/data or pass --data")
    start = time.perf_counter()
    loaded = [load_source(s) for s in default_teacher_sources(Path(args.data))]
    decode_seconds = time.perf_counter() - start
    dataset = LandmarkCrops(loaded, args.input_size, train=True)
    rows = [{"workers": w, "img_per_s": images_per_second(dataset, w, args.batches)} for w in args.workers]
    report = {"input_size": args.input_size, "augmentations": "all (geometry + photometric)", "n_images": len(dataset),
              "decode_seconds": decode_seconds, "rows": rows, **provenance()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, report)
    print(f"decoded {len(dataset)} faces into memory in {decode_seconds:.1f}s")
    print("| workers | augmented img/s |\n|---|---|")
    for row in rows:
        print(f"| {row['workers']} | {row['img_per_s']:.0f} |")
    return report
