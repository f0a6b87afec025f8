"""A local stand-in for the Azure Functions host (`python -m local.host`).

Runs `function_app.py` the way the host does: HTTP routes with keys, timers, queue triggers on
Azurite. Not deployed; used by `make run`, `local.stack` and the tests.
"""
