"""The command line: a Typer skin over the core packages; `mnistctl.cli.commands` registers the commands."""

from mnistctl.cli.commands import app, main

__all__ = ["app", "main"]
