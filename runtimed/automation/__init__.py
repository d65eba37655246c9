"""Papermill-style automation: parameterized, headless runs that are live notebooks in the daemon."""
