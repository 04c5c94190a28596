// Replaced by the CLI implementation (issue 5).
