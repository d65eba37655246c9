"""Runtime agent: drives Jupyter kernels for notebooks."""
