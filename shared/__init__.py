"""Poolkeeper: keeps Kubernetes node pools on Azure VM Scale Sets sized, patched and imaged.

`function_app.py` calls `shared.flows`; only `shared.adapters` touches Azure SDKs.
"""

__version__ = "0.2.0"
