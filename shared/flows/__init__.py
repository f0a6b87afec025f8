"""Workflows: read fresh state through adapters, ask the core for a decision, act, record."""
