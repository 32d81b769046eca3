"""ddso: data-driven sales optimisation on Ray."""

__version__ = "0.1.0"
