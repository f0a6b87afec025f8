"""Adapters: one module per external system; the only code importing Azure SDKs or kubernetes."""
