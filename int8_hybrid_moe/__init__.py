"""INT8 hybrid-blockwise Mixture-of-Experts layer: PyTorch operators and a Python orchestrator.

Importing the package never needs the compiled library: the pure-Python parts (MoEActivation,
QuantScheme, HybridFormat, the torch reference in `reference`) are always available. The modules
that call the operators (`ops`, `permute`, `quant`, `cutlass_runner`) load
libint8_hybrid_moe_ops.so when imported ($INT8_HYBRID_MOE_LIB, default <repo>/build/) and raise
LibraryNotFoundError (an ImportError) with the build instructions if it is missing.
"""

from __future__ import annotations

import importlib

from ._lib import (
    LIB_ENV,
    LIB_NAME,
    LibraryNotFoundError,
    default_library_path,
    is_available,
    library_path,
    load_library,
    loaded_library,
)
from .activation import MoEActivation
from .format import HybridFormat, QuantScheme

__version__ = "0.1.0"

_LAZY_MODULES = ("ops", "permute", "quant", "cutlass_runner", "reference")
_LAZY_NAMES = {
    "Int8MoEWeights": "cutlass_runner",
    "quantize_moe_weights": "cutlass_runner",
    "cutlass_moe_int8": "cutlass_runner",
    "moe_forward": "cutlass_runner",
}

__all__ = [
    "LIB_ENV",
    "LIB_NAME",
    "LibraryNotFoundError",
    "default_library_path",
    "is_available",
    "library_path",
    "load_library",
    "loaded_library",
    "MoEActivation",
    "HybridFormat",
    "QuantScheme",
    *_LAZY_MODULES,
    *_LAZY_NAMES,
]


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
