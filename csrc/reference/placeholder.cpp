// Replaced by the CPU reference (issue 2).
