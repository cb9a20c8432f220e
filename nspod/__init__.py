"""nspod: pods on raw Linux namespaces."""

__version__ = "0.1.0"
