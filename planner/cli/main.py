"""The command line: parse, call one core function, hand the result to a renderer.

Exit codes: 0 success; 1 nothing feasible (with the reasons and a hint); 2 invalid input or
usage; 130 interrupted. Results go to stdout (or atomically to -o FILE), everything else
(errors, the progress line) to stderr. A user's mistake never shows a traceback; a bug does.
"""

import gc
import os
import sys

import typer

from planner.cli import calibrate, compare, explain, models, plan, presets, serve
from planner.cli.common import PlainUsage
from planner.errors import PlannerError

try:  # typer >= 0.20 ships its own copy of click; its exceptions are the ones raised
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer
    import click

NoArgsIsHelpError = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
NON_TTY_WIDTH = 80  # tables and plots written to a pipe or a file

HELP = (
    "Plan how to partition a Transformer across accelerator chips for inference "
    "(Pope et al. 2022): the latency/MFU frontier of every layout.\n\n"
    "\b\nExamples:\n"
    "  planner plan configs/plans/palm-540b-tpu-v4.yaml\n"
    "  planner plan configs/plans/palm-540b-tpu-v4.yaml --plot\n"
    "  planner explain --model palm-540b --cluster tpu-v4 --chips 64 \\\n"
    "      --phase decode --batch 64 --ffn ws2d --attention batch --weights int8\n"
    "  planner presets\n\n"
    "Exit codes: 0 success, 1 nothing feasible, 2 invalid input. Shell completion: "
    "planner --install-completion."
)

# Each command lives in its own module; registering them here keeps the imports one-way.
COMMANDS = {
    "plan": lambda app: app.command()(plan.plan),
    "explain": lambda app: app.command()(explain.explain),
    "compare": lambda app: app.command(help=compare.HELP)(compare.compare),
    "calibrate": lambda app: app.command(cls=PlainUsage)(calibrate.calibrate),
    "presets": lambda app: app.command()(presets.presets),
    "serve": lambda app: app.command()(serve.serve),
    "models": lambda app: app.add_typer(models.app, name="models"),
}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"planner {version('planner')}")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            print("planner (not installed)")
        raise typer.Exit()


def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass


def new_app(commands=COMMANDS) -> typer.Typer:
    """The `planner` app with `commands` (names in COMMANDS) registered, in COMMANDS' order."""
    app = typer.Typer(
        add_completion=True,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 88},
        help=HELP,
    )
    for name in COMMANDS:
        if name in commands:
            COMMANDS[name](app)
    app.callback()(_main)
    return app


app = new_app()  # the whole command line: `planner --help`, completion, unknown commands


def _app_for(args: list[str]) -> typer.Typer:
    """The app to run `args` with. Typer builds the click parameters of every registered command
    on each run (about 4 ms of `planner plan`'s start-up for the commands it does not run), so
    when the first argument names a command the app holds only that one: the command parses,
    helps and fails exactly as in the whole app (group options such as --version can only come
    before the command name)."""
    if args and args[0] in COMMANDS:
        return new_app([args[0]])
    return app


def run(args: list[str] | None = None) -> int:
    """Run the command line on `args` (default: sys.argv[1:]) and return the exit code."""
    args = sys.argv[1:] if args is None else list(args)
    try:
        code = _app_for(args)(args=args, prog_name="planner", standalone_mode=False)
        if code == 130:  # typer turned a Ctrl-C into this exit code
            print("interrupted", file=sys.stderr)
        return code if isinstance(code, int) else 0
    except PlannerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exit_:
        return exit_.exit_code
    except NoArgsIsHelpError as error:  # `planner` alone: help, not an error
        print(error.ctx.get_help())
        return 0
    except click.ClickException as error:  # unknown command or option, bad flag value
        print(f"error: {error.format_message()}", file=sys.stderr)
        ctx = getattr(error, "ctx", None)
        if ctx is not None:
            print(f"  hint: see '{ctx.command_path} --help'", file=sys.stderr)
        return 2


def main() -> None:
    """The `planner` console script."""
    # A command is one short process that imports numpy and planner's modules (some 50
    # dataclasses: compiled methods, class objects) and frees what it builds by reference
    # counting: the cycle collector's passes over that growing heap find nothing and cost about a
    # tenth of a run. It is off for the command (the search turns it off for itself anyway).
    collecting = gc.isenabled()
    gc.disable()
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `planner plan ... | head`: the reader left, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 141
    finally:
        if collecting:
            gc.enable()
    sys.exit(code)


if __name__ == "__main__":
    main()
