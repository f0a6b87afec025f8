"""The Azure simulator: a stateful world of scale sets that the real Azure SDKs talk to.

Imports nothing from `shared/`: a simulator that shares the product's code shares its mistakes.
"""
