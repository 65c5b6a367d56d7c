"""The command line: a Typer skin over mnistctl's Python API (``mnistctl.api``)."""

from mnistctl.cli.commands import app, main

__all__ = ["app", "main"]
