"""Locating and loading libint8_hybrid_moe_ops.so (the operator library).

The path comes from the environment variable ``INT8_HYBRID_MOE_LIB`` (a file, or a folder holding
``libint8_hybrid_moe_ops.so``); without it, ``<repo>/build/libint8_hybrid_moe_ops.so`` relative to
this package. Loading registers the ``torch.ops.int8_hybrid_moe`` operators and then their fake
(shape-only) implementations of :mod:`int8_hybrid_moe._fake`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

LIB_ENV = "INT8_HYBRID_MOE_LIB"
LIB_NAME = "libint8_hybrid_moe_ops.so"
NAMESPACE = "int8_hybrid_moe"

BUILD_HINT = (
    "Build it from the repository root:\n"
    "    scripts/fetch_deps.sh\n"
    "    cmake -S . -B build -G Ninja -DINT8HYBRID_CUDA_ARCHS=90\n"
    "    cmake --build build --target int8_hybrid_moe_ops\n"
    "(CMake builds the extension only when the Python it finds can `import torch`), or point "
    f"{LIB_ENV} at an existing {LIB_NAME}."
)


class LibraryNotFoundError(ImportError):
    """The operator library is missing or cannot be loaded."""


_lock = threading.Lock()
_loaded: Optional[Path] = None


def default_library_path() -> Path:
    """``<repo>/build/libint8_hybrid_moe_ops.so``, the repository being this package's parent."""
    return Path(__file__).resolve().parent.parent / "build" / LIB_NAME


def library_path() -> Path:
    """The library path to load: ``$INT8_HYBRID_MOE_LIB`` if set, else the repo-relative default."""
    env = os.environ.get(LIB_ENV, "").strip()
    if not env:
        return default_library_path()
    p = Path(env).expanduser()
    if p.is_dir():
        p = p / LIB_NAME
    return p


def loaded_library() -> Optional[Path]:
    """The path loaded so far, or None."""
    return _loaded


def load_library(path: "str | os.PathLike[str] | None" = None) -> Path:
    """Loads the operator library once (later calls return the loaded path).

    Raises LibraryNotFoundError (an ImportError) with the build instructions when the file does
    not exist or cannot be loaded.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        p = Path(path) if path is not None else library_path()
        source = (
            "the argument"
            if path is not None
            else (f"${LIB_ENV}" if os.environ.get(LIB_ENV, "").strip() else "the default path")
        )
        if not p.is_file():
            raise LibraryNotFoundError(
                f"int8_hybrid_moe: the operator library {p} (from {source}) does not exist. "
                + BUILD_HINT
            )
        import torch  # noqa: PLC0415 (torch is only needed once the library is wanted)

        try:
            torch.ops.load_library(str(p))
        except (OSError, RuntimeError) as e:
            raise LibraryNotFoundError(
                f"int8_hybrid_moe: could not load the operator library {p} (from {source}): {e}. "
                + BUILD_HINT
            ) from e
        from . import _fake  # noqa: F401,PLC0415 (registers the fake implementations)

        _loaded = p.resolve()
        return _loaded


def is_available() -> bool:
    """True when the operator library is (or can be) loaded."""
    try:
        load_library()
    except ImportError:
        return False
    return True
