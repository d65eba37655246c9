"""runtimed: event-sourced notebooks with runtime agents on real Jupyter kernels."""

__version__ = "0.1.0"
