"""Activation functions of the MoE layer (pure Python)."""

from __future__ import annotations

import enum


class MoEActivation(enum.Enum):
    """Activation between the two expert GEMMs.

    SILU is the gated form: GEMM1 produces [gate | up] of 2N columns and the activation is
    silu(gate) * up (the `silu_and_mul` operator), computed in fp32 and rounded to the dtype.
    """

    SILU = "silu"

    @property
    def is_gated(self) -> bool:
        return True

    @property
    def op_name(self) -> str:
        """Name of the torch.ops.int8_hybrid_moe operator that applies it."""
        return {MoEActivation.SILU: "silu_and_mul"}[self]

    @classmethod
    def parse(cls, value: "MoEActivation | str") -> "MoEActivation":
        if isinstance(value, cls):
            return value
        key = str(value).strip().lower()
        if key in ("silu", "silu_and_mul", "swiglu"):
            return cls.SILU
        raise ValueError(f"unsupported MoE activation {value!r}: supported: 'silu'")
