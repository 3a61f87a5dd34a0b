"""Run folders: one per training run, holding config, data fingerprint, log, metrics, checkpoints and plots."""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from pathlib import Path

from facelm import __version__


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=Path(__file__).parent)
    except OSError:
        return "unknown"
    sha = out.stdout.strip() or "unknown"
    return sha + ("-dirty" if dirty.stdout.strip() else "")


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files in sorted order (an .mlpackage is a directory)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        if path.is_dir():
            digest.update(str(item.relative_to(path)).encode())
        digest.update(item.read_bytes())
    return digest.hexdigest()


def make_run_dir(root: Path, name: str) -> Path:
    run_dir = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def write_json(path: Path, data: dict) -> Path:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Path(path)


def read_history(run_dir: Path) -> list[dict]:
    """A run's per-epoch rows, from the metrics.jsonl that `facelm.engine.fit` appends to."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def run_logger(run_dir: Path, name: str) -> logging.Logger:
    """Logger writing to `<run_dir>/<name>.log` and the console."""
    logger = logging.getLogger(f"facelm.{name}.{run_dir.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    for handler in (logging.FileHandler(run_dir / f"{name}.log"), logging.StreamHandler()):
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def jsonable_args(args) -> dict:
    return {k: _jsonable(v) for k, v in vars(args).items()}


LEGACY_ARGS = {"head": "head_type", "photos_per_batch": "unlabelled_per_batch"}  # recorded names of renamed options


def current_args(recorded: dict) -> dict:
    """A run's recorded training options under today's names, whichever version of facelm recorded them."""
    return {LEGACY_ARGS.get(key, key): value for key, value in recorded.items()}


def data_label(path: str | Path) -> str:
    """A data folder as cards and tables show it: its last two parts ('300w/testset'), the same under any data root
    (run configs and reports keep the full path). Several folders joined by ' + ' keep the join."""
    return " + ".join("/".join(Path(part).parts[-2:]) for part in str(path).split(" + "))


def machine() -> dict:
    """Where a number was measured: CPU model, cores, OS, Python and (when loaded) torch."""
    import os
    import platform
    import sys

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "python": platform.python_version()}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def provenance() -> dict:
    return {"facelm": __version__, "git_commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine": machine()}
