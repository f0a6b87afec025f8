"""Patch jobs: the rolling window (`rollout`) and one node's steps (`node`)."""
