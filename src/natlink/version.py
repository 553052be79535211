"""natlink's version: one place, read by the package face and written into every model sidecar."""

__version__ = "0.1.0"
