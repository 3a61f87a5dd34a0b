"""Run folders: one per training run, holding config, data fingerprint, log, metrics, checkpoints and plots."""
from __future__ import annotations

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


def make_run_dir(root: Path, name: str) -> Path:
    run_dir = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def write_json(path: Path, data: dict) -> Path:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Path(path)


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


def provenance() -> dict:
    return {"facelm": __version__, "git_commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
