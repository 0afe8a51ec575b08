"""The process's rich consoles (results on stdout, progress and messages on stderr) and library log levels."""

from __future__ import annotations

import os
import warnings

from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)


def quiet_libraries() -> None:
    """Keep library progress bars and info logs out of non-interactive output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    # lazy: transformers and datasets, only once a command works with models; the CLI imports this module
    import transformers

    # transformers 5 renamed gradient_checkpointing; TRL still sets the old name on every config
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        # lazy: datasets, as transformers above
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass
