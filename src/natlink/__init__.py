"""natlink: privacy-preserving record linkage of patient datasets at national scale."""

__version__ = "0.1.0"

__all__ = ["__version__"]
