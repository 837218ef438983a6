"""The package version (a leaf module, so that modules below the package's ``__init__`` can
record it without importing the package's top)."""

__version__ = "0.1.0"
