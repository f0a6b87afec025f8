"""Capacity: P1/P2 evaluation (`evaluation`), alert intake (`alerts`), the downscale review."""
