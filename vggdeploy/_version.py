"""The package version, written into every artifact's metadata."""

__version__ = "0.1.0"
