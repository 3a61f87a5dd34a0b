"""Console output: the project's own lines, without the import and conversion noise of third-party libraries.

The noise is silenced at its source, each entry naming the library's logger or warning category and the message, so
a different message from the same library still shows. Third-party INFO logs are below the root level; the
project's own warnings and every error always show. `facelm -v` skips all of it and shows everything.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

# logger -> message fragments it prints on import or conversion that say nothing about the user's run
NOISY_LOG_MESSAGES = {
    "coremltools": ("has not been tested with coremltools", "Failed to load _ML"),  # no Core ML framework on Linux
    "torchao": ("Failed to load ",),  # CUDA kernels in a CPU-only install
    "torchao.kernel.intmm": ("Detected no triton",),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
    "torch.onnx._internal.exporter._registration": ("torchvision is not installed",),
}
# (category, message regex) of warnings raised inside third-party code
NOISY_WARNINGS = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (RuntimeWarning, r"os\.fork\(\) was called\. os\.fork\(\) is incompatible with multithreaded code, and JAX"),
    (UserWarning, r"Warning: Enabling `experimental_preserve_all_tensors`"),
)
# read by the libraries when they are imported, so they are set before any of them is
QUIET_ENVIRONMENT = {
    "LITERT_TORCH_SHOW_PROGRESS": "n",  # litert-torch's [START]/[DONE] trace of every conversion step
    "TQDM_DISABLE": "1",  # converters' tqdm bars (coremltools passes, ai-edge-quantizer); facelm's bars are rich's
}
# lines that TensorFlow/LiteRT C++ code writes to file descriptor 2 itself, past Python's logging and warnings
NATIVE_NOISE = (
    "Created TensorFlow Lite XNNPACK delegate for CPU",
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "flatbuffer_export.cc",
)
LOG_FORMAT = "%(asctime)s %(message)s"
P = ParamSpec("P")
R = TypeVar("R")
_verbose = False


class MessageFilter(logging.Filter):
    """Drops the records whose message contains one of `fragments`."""

    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def _console_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    handler.set_name("facelm-console")
    return handler


def configure_output(verbose: bool = False) -> None:
    """Console logging for one `facelm` command: facelm's INFO lines, other libraries' WARNING and above, known
    third-party noise dropped; with `verbose`, every library's INFO lines and no filter at all."""
    root = logging.getLogger()
    if not any(h.get_name() == "facelm-console" for h in root.handlers):
        root.addHandler(_console_handler())
    logging.getLogger("facelm").setLevel(logging.INFO)
    global _verbose
    _verbose = verbose
    if verbose:
        root.setLevel(logging.INFO)
        return
    root.setLevel(logging.WARNING)
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name, fragments in NOISY_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, MessageFilter) for f in logger.filters):
            logger.addFilter(MessageFilter(fragments))
    for category, message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Around a short call into C++ code that prints its own notices: what it writes to file descriptor 2 is held
    back and written out after the call, less the NATIVE_NOISE lines (everything, under `facelm -v`)."""
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(noise in line for noise in NATIVE_NOISE)))


def first_call_native_noise_filtered(run: Callable[P, R]) -> Callable[P, R]:
    """`run`, its first call under native_noise_filtered: LiteRT applies its XNNPACK delegate, and says so, then."""
    called = False

    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal called
        if called:
            return run(*args, **kwargs)
        called = True
        with native_noise_filtered():
            return run(*args, **kwargs)

    return wrapped
