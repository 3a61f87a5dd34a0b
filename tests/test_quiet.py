"""A `facelm` command prints the project's own lines and not the import noise of third-party libraries; `-v` shows
it all, and the project's own warnings and every error still show."""
from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest
from conftest import released_export

from facelm.quiet import QUIET_ENVIRONMENT, configure_output


def facelm_output(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facelm.cli", *args], capture_output=True, text=True, timeout=600)


def test_eval_help_prints_only_its_usage():
    result = facelm_output("eval", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: facelm eval") and result.stderr == ""


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML loads on macOS, so coremltools has nothing to warn about")
def test_eval_of_a_coreml_export_prints_no_third_party_line_unless_verbose(tiny_300w, tmp_path):
    pytest.importorskip("coremltools")
    model = str(released_export(".mlpackage"))
    quiet = facelm_output("eval", "--model", model, "--data", str(tiny_300w), "--report", str(tmp_path / "q.json"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert quiet.stdout and all(" NME " in line for line in quiet.stdout.splitlines())  # the result lines only
    verbose = facelm_output("-v", "eval", "--model", model, "--data", str(tiny_300w), "--report", str(tmp_path / "v.json"))
    assert verbose.returncode == 0
    assert "Failed to load _MLModelProxy" in verbose.stderr  # the noise exists; the quiet run dropped it


@pytest.fixture
def restored_logging_and_warnings(monkeypatch):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for name in QUIET_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        yield
    root.handlers[:], root.level = handlers, level


def test_known_noise_is_dropped_and_other_messages_of_the_same_library_show(restored_logging_and_warnings, caplog):
    configure_output()
    coremltools = logging.getLogger("coremltools")
    coremltools.warning("Failed to load _MLModelProxy: No module named 'coremltools.libcoremlpython'")
    coremltools.error("conversion failed at op conv_1")
    logging.getLogger("facelm.export").info("onnx_fp32: success")
    assert [r.getMessage() for r in caplog.records] == ["conversion failed at op conv_1", "onnx_fp32: success"]


def test_project_warnings_show_and_known_third_party_warnings_do_not(restored_logging_and_warnings):
    configure_output()
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use TreeSpec", FutureWarning)
        warnings.warn("facelm: the calibration was fitted for another model", UserWarning)
        warnings.warn("`isinstance(x, Spec)` is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["facelm: the calibration was fitted for another model",
                                                "`isinstance(x, Spec)` is deprecated"]


def test_native_notices_are_dropped_and_other_native_lines_kept():
    code = ("import os\nfrom facelm.quiet import QUIET_ENVIRONMENT, configure_output, native_noise_filtered\nconfigure_output()\n"
            "with native_noise_filtered():\n"
            "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\nE0000 converter failed\\n')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "E0000 converter failed\n"
