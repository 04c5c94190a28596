"""Shared fixtures of the Python tests.

CPU tests need torch; those touching operators also need the built library
(libint8_hybrid_moe_ops.so: $INT8_HYBRID_MOE_LIB or <repo>/build/). GPU tests (marked `gpu`)
additionally need a CUDA device. Each skips with the reason when its requirement is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")


def _library_or_reason():
    import int8_hybrid_moe

    try:
        int8_hybrid_moe.load_library()
    except ImportError as e:
        return None, f"libint8_hybrid_moe_ops.so is not built or not loadable: {e}"
    return True, ""


@pytest.fixture(scope="session")
def lib():
    """The loaded operator library (skips when it is not built)."""
    loaded, reason = _library_or_reason()
    if not loaded:
        pytest.skip(reason)
    return torch.ops.int8_hybrid_moe


@pytest.fixture(scope="session")
def cuda(lib):
    """CUDA device with the library loaded (skips without a GPU)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    return torch.device("cuda")


def pytest_collection_modifyitems(config, items):
    # Files named test_gpu_* are GPU tests: mark them so `-m gpu` / `-m "not gpu"` select them.
    for item in items:
        if Path(str(item.fspath)).name.startswith("test_gpu_"):
            item.add_marker(pytest.mark.gpu)


def pytest_report_header(config):
    lib_env = os.environ.get("INT8_HYBRID_MOE_LIB", "<unset: <repo>/build/libint8_hybrid_moe_ops.so>")
    return [
        f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
        f"INT8_HYBRID_MOE_LIB: {lib_env}",
    ]
