"""The `m2rl` command line: a thin Typer shell over the Python API, one module per command."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer
from rich.markup import escape
from typer._click import exceptions as bundled  # typer bundles its own click

from m2rl import __version__
from m2rl.commands import analyze, compare, data, distill, merge, pipeline, rl, runs, sft, verify
from m2rl.commands import eval as eval_command
from m2rl.errors import Interrupted, StudyFailed, UserError
from m2rl.provenance import command_line
from m2rl.signals import Terminated, signal_behind

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
    add_completion=True,  # --install-completion / --show-completion: Typer's completion for bash, zsh, fish
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        print(f"m2rl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[  # noqa: ARG001 (handled by its callback)
        bool,
        typer.Option(
            "--version",
            help="Print m2rl's version and exit.",
            callback=_print_version,
            is_eager=True,
            metavar="",
        ),
    ] = False,
) -> None:
    """Options of `m2rl` itself (before the command)."""


# Each command's examples, shown at the end of its --help (one per line).
EXAMPLES = {
    "sft": ["m2rl sft sft.epochs=1", "m2rl sft preset=paper model.path=/models/qwen3-4b-base --dry-run"],
    "runs": ["m2rl runs", "m2rl runs --kind rl --json", "m2rl runs --check"],
    "rl": [
        "m2rl rl --domains math --from study-s0-sft rl.steps=50",
        "m2rl rl --domains math,code,science,if --from study-s0-sft",
    ],
    "distill": ["m2rl distill --teachers study --from study-s0-sft"],
    "merge": [
        "m2rl merge --method paper_ties --experts study-s0-rl-math,study-s0-rl-code",
        "m2rl merge --method ties --experts 'study-s0-rl-*' merge.density=0.3",
        "m2rl merge --method paper_ties --experts 'study-s0-rl-*' --search 8 --search-items 32",
    ],
    "verify": ["m2rl verify responses.jsonl -o scored.jsonl verifiers.require_think=false"],
    "eval": ["m2rl eval study-s0-rl-mixed", "m2rl eval study-s0-sft eval.k=8 seed=1 --replace"],
    "compare": ["m2rl compare", "m2rl compare --study study", "m2rl compare study-s0-sft study-s0-rl-mixed"],
    "analyze": ["m2rl analyze", "m2rl analyze study analyze.neighbourhoods.prompts=16"],
    "pipeline": [
        "m2rl pipeline",
        "m2rl pipeline study.seeds=3",
        "m2rl pipeline study.domains=[math,code] data.sizes.test=64 --dry-run",
        "m2rl pipeline preset=paper study.executor=slurm study.slurm.partition=gpu --dry-run",
    ],
}


def _epilog(name: str) -> str:
    # escaped: `[math,code]` is not markup
    return "Examples:\n\n" + "\n\n".join(f"  {escape(example)}" for example in EXAMPLES[name])


def _register() -> None:
    app.command("sft", help=sft.__doc__, epilog=_epilog("sft"))(sft.command)
    app.command("runs", help=runs.__doc__, epilog=_epilog("runs"))(runs.command)
    app.command("rl", help=rl.__doc__, epilog=_epilog("rl"))(rl.command)
    app.command("distill", help=distill.__doc__, epilog=_epilog("distill"))(distill.command)
    app.command("merge", help=merge.__doc__, epilog=_epilog("merge"))(merge.command)
    app.add_typer(data.app, name="data", help=data.__doc__)
    app.command("verify", help=verify.__doc__, epilog=_epilog("verify"))(verify.command)
    app.command("eval", help=eval_command.__doc__, epilog=_epilog("eval"))(eval_command.command)
    app.command("compare", help=compare.__doc__, epilog=_epilog("compare"))(compare.command)
    app.command("analyze", help=analyze.__doc__, epilog=_epilog("analyze"))(analyze.command)
    app.command("pipeline", help=pipeline.__doc__, epilog=_epilog("pipeline"))(pipeline.command)


_register()


def _usage_error(exc: BaseException) -> str | None:
    """The one-line message of a command-line usage error ("" when help was shown instead), else None."""
    if isinstance(exc, bundled.NoArgsIsHelpError):
        return ""  # typer printed the help while raising it
    if isinstance(exc, bundled.UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else "m2rl"
        return f"{exc.format_message()} (see `{command} --help`)"
    if isinstance(exc, bundled.FileError):
        return exc.format_message()
    return None


def _say_interrupted(exc: Interrupted) -> None:
    """One line: the signal, what it stopped (marked failed) and the command that resumes it."""
    key = " (Ctrl-C)" if exc.signum == signal.SIGINT else ""
    runs = f"run{'s' if len(exc.stopped) > 1 else ''} {', '.join(exc.stopped)}"
    what = f": stopped {runs}, marked failed" if exc.stopped else ""
    if exc.resume:
        resume = f"; resume with: {exc.resume}"
    elif exc.no_resume:
        resume = f"; {exc.no_resume}: start it again with: {command_line(sys.argv)}"
    else:
        resume = ""
    print(f"m2rl: {exc}{key}{what}{resume}", file=sys.stderr)


def _raise_on_sigterm(signum: int, frame: object) -> None:  # noqa: ARG001
    raise Terminated(f"terminated by signal {signum}")  # a BaseException: `except Exception` lets it pass


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail again on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    """Entry point. Exit status: 0 success, 2 bad input or usage, 130 Ctrl-C, 143 SIGTERM, 1 failure."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    # SIGTERM outside a run's attempt (start-up, eval, printing) ends as cleanly as Ctrl-C does
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        status = app(standalone_mode=False)
    except UserError as exc:
        if debug:
            raise
        print(f"m2rl: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        if (
            exc.stopped and not exc.resume and not exc.no_resume
        ):  # a study's stages: the same command resumes them
            exc.resume = command_line(sys.argv)
        _say_interrupted(exc)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        _say_interrupted(Interrupted(signal.SIGINT))
        sys.exit(130)
    except Terminated:
        _say_interrupted(Interrupted(signal.SIGTERM))
        sys.exit(143)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        # typer exits 1 when our output's reader went away (`m2rl runs --json | head`): not an error
        if isinstance(exc.__context__, BrokenPipeError):
            _quiet_stdout()
            sys.exit(0)
        raise
    except StudyFailed as exc:
        print(f"m2rl: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # usage errors and anything unexpected
        signum = signal_behind(exc)
        if signum is not None:  # a cleanup that failed while Ctrl-C or SIGTERM unwound through it
            _say_interrupted(Interrupted(signum))
            sys.exit(128 + signum)
        message = _usage_error(exc)
        if message is not None and not debug:
            if message:
                print(f"m2rl: error: {message}", file=sys.stderr)
            sys.exit(2)
        if debug:
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"m2rl: error: {type(exc).__name__}: {first_line} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    if status == 130:  # typer turns Ctrl-C outside a run's attempt into this status
        _say_interrupted(Interrupted(signal.SIGINT))
    if isinstance(status, int) and status:
        sys.exit(status)


if __name__ == "__main__":
    main()
