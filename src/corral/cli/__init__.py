"""The ``corral`` command line: a thin client of the control-plane API."""

from corral.cli._app import app, main

__all__ = ["app", "main"]
