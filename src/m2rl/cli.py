"""The `m2rl` command line: a thin Typer shell over the Python API, one module per command."""

from __future__ import annotations

import sys

import typer

from m2rl.errors import Interrupted, StudyFailed, UserError

app = typer.Typer(
    name="m2rl",
    help=(
        "m2rl runs the mix-or-merge study of multi-domain RL with verifiable rewards (RLVR): SFT a base "
        "model, train one GRPO expert per domain and one mixed run on all domains, merge the experts, "
        "evaluate everything and compare scores against device-hours.\n\n"
        "Every command composes its config from conf/ with Hydra; pass overrides as trailing arguments "
        "(e.g. `m2rl rl --domains math rl.steps=50`). `preset=tiny` (default) runs on a CPU in minutes "
        "with a built-in 1M-parameter model and built-in data; `preset=paper` is the paper's recipe "
        "(Qwen3-4B-Base, Nemotron data, GPUs). Use --dry-run to see the resolved config."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _register() -> None:
    from m2rl.commands import runs, sft

    app.command("sft", help=sft.__doc__)(sft.command)
    app.command("runs", help=runs.__doc__)(runs.command)
    from m2rl.commands import rl

    app.command("rl", help=rl.__doc__)(rl.command)
    from m2rl.commands import merge

    app.command("merge", help=merge.__doc__)(merge.command)
    from m2rl.commands import data

    app.add_typer(data.app, name="data", help=data.__doc__)
    from m2rl.commands import verify

    app.command("verify", help=verify.__doc__)(verify.command)
    from m2rl.commands import compare
    from m2rl.commands import eval as eval_command

    app.command("eval", help=eval_command.__doc__)(eval_command.command)
    app.command("compare", help=compare.__doc__)(compare.command)
    from m2rl.commands import pipeline

    app.command("pipeline", help=pipeline.__doc__)(pipeline.command)


_register()


def _usage_error(exc: BaseException) -> str | None:
    """The message of a command-line usage error (typer bundles its own click), else None."""
    from typer._click import exceptions as bundled

    if isinstance(exc, bundled.NoArgsIsHelpError):
        return ""
    if isinstance(exc, bundled.UsageError | bundled.FileError):
        return exc.format_message()
    import click

    return exc.format_message() if isinstance(exc, click.exceptions.UsageError) else None


def _say_interrupted(exc: Interrupted) -> None:
    what = f"stopped {', '.join(exc.stopped)} (marked failed)" if exc.stopped else "stopped"
    resume = f"; resume with: {exc.resume}" if exc.resume else ""
    print(f"m2rl: {exc}: {what}{resume}", file=sys.stderr)


def main() -> None:
    """Entry point. Exit status: 0 success, 2 bad input or usage, 130 Ctrl-C, 143 SIGTERM, 1 failure."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        status = app(standalone_mode=False)
    except UserError as exc:
        if debug:
            raise
        print(f"m2rl: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        _say_interrupted(exc)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        print("m2rl: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("m2rl: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except StudyFailed as exc:
        print(f"m2rl: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # usage errors and anything unexpected
        message = _usage_error(exc)
        if message is not None and not debug:
            if message:
                print(f"m2rl: error: {message} (see `m2rl --help`)", file=sys.stderr)
            else:
                app(["--help"], standalone_mode=False)
            sys.exit(2)
        if debug:
            raise
        print(
            f"m2rl: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    if isinstance(status, int) and status:
        sys.exit(status)


if __name__ == "__main__":
    main()
