"""Lets `python bench/run.py` and `python bench/gate.py` run by path, from a checkout or from a copied folder holding
`bench/` and `facelm/` with nothing installed (docs/device_guide.md): the folder above goes on the path, and this
folder is registered as `facelm.bench`, where `pip install` puts it (pyproject's package-dir)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def enable() -> None:
    if "facelm.bench" in sys.modules:
        return
    sys.path.insert(0, str(HERE.parent))
    import facelm

    spec = importlib.util.spec_from_file_location("facelm.bench", HERE / "__init__.py", submodule_search_locations=[str(HERE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["facelm.bench"] = module
    facelm.bench = module
    spec.loader.exec_module(module)
