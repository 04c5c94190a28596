"""The quantization schemes and the parameters of the hybrid INT8 format (pure Python).

Hybrid blockwise format (docs/FORMAT.md): an operand X [rows, K] is stored as q int8 [rows, K],
integer block scales Q int32 [rows, nb] in 1..q_max and one float F per super group,
F float32 [rows, ng], with nb = ceil(K / block_size) and ng = ceil(nb / super_group).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

INT8_MAX = 127


class QuantScheme(enum.IntEnum):
    """Values match the C++ QuantScheme and the `scheme` argument of the operators."""

    HYBRID = 0  # hybrid blockwise Q/F
    PER_TOKEN = 1  # per-token activations x per-channel weights

    @classmethod
    def parse(cls, value: "QuantScheme | str | int") -> "QuantScheme":
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for s in cls:
                if s.name.lower() == key:
                    return s
            raise ValueError(f"unknown quantization scheme {value!r}: use 'hybrid' or 'per_token'")
        return cls(int(value))


@dataclass(frozen=True)
class HybridFormat:
    block_size: int = 128  # B: a positive multiple of 16
    super_group: int = 256  # S: K-blocks per super group sharing one F, >= 1
    q_max: int = 16  # largest integer block scale, 1..127

    def validate(self) -> "HybridFormat":
        if not (self.block_size > 0 and self.block_size % 16 == 0):
            raise ValueError(
                "argument 'block_size (B)' must be a positive multiple of 16, got "
                f"{self.block_size}"
            )
        if self.super_group < 1:
            raise ValueError(f"argument 'super_group (S)' must be >= 1, got {self.super_group}")
        if not (1 <= self.q_max <= INT8_MAX):
            raise ValueError(f"argument 'q_max' must be in [1, 127], got {self.q_max}")
        return self

    def num_blocks(self, K):
        return (K + self.block_size - 1) // self.block_size

    def num_groups(self, K):
        return (self.num_blocks(K) + self.super_group - 1) // self.super_group
