"""The process's rich consoles: results on stdout, progress and messages on stderr."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)
