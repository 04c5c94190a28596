"""Library loading and its error message (CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def _run(code: str, env_lib: "str | None"):
    env = dict(os.environ)
    env.pop("INT8_HYBRID_MOE_LIB", None)
    if env_lib is not None:
        env["INT8_HYBRID_MOE_LIB"] = env_lib
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_pure_parts_import_without_library(tmp_path):
    code = (
        "import int8_hybrid_moe as m\n"
        "assert m.MoEActivation.SILU.op_name == 'silu_and_mul'\n"
        "assert m.QuantScheme.parse('per-token') == m.QuantScheme.PER_TOKEN\n"
        "assert m.HybridFormat().num_blocks(2048) == 16\n"
        "assert not m.is_available()\n"
        "print('ok')\n"
    )
    r = _run(code, str(tmp_path / "nowhere" / "libint8_hybrid_moe_ops.so"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_missing_library_message(tmp_path):
    missing = tmp_path / "nowhere" / "libint8_hybrid_moe_ops.so"
    code = (
        "import int8_hybrid_moe\n"
        "try:\n"
        "    from int8_hybrid_moe import ops\n"
        "except ImportError as e:\n"
        "    assert isinstance(e, int8_hybrid_moe.LibraryNotFoundError)\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    r = _run(code, str(missing))
    assert r.returncode == 0, r.stderr
    msg = r.stdout
    assert str(missing) in msg
    assert "does not exist" in msg
    assert "$INT8_HYBRID_MOE_LIB" in msg
    assert "scripts/fetch_deps.sh" in msg
    assert "cmake" in msg


def test_library_path_resolution(tmp_path, monkeypatch):
    from int8_hybrid_moe import _lib

    monkeypatch.delenv("INT8_HYBRID_MOE_LIB", raising=False)
    assert _lib.library_path() == REPO / "build" / "libint8_hybrid_moe_ops.so"
    monkeypatch.setenv("INT8_HYBRID_MOE_LIB", str(tmp_path))
    assert _lib.library_path() == tmp_path / "libint8_hybrid_moe_ops.so"
    monkeypatch.setenv("INT8_HYBRID_MOE_LIB", str(tmp_path / "x.so"))
    assert _lib.library_path() == tmp_path / "x.so"


def test_unloadable_file_message(tmp_path):
    bogus = tmp_path / "libint8_hybrid_moe_ops.so"
    bogus.write_text("not an ELF file")
    code = (
        "try:\n"
        "    import int8_hybrid_moe.ops\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    r = _run(code, str(bogus))
    assert r.returncode == 0, r.stderr
    assert "could not load" in r.stdout and str(bogus) in r.stdout
