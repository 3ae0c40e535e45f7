"""`python -m planner` and the `planner` console script (planner.cli.main.main), with the cycle
collector off from the first import: a command is one short process whose start-up (numpy,
typer and some 50 dataclasses) it would otherwise slow by about a tenth, finding nothing to free
(see planner.cli.main.main, which keeps it off for the command)."""

import gc


def main() -> None:
    gc.disable()
    from planner.cli.main import main as run

    run()


if __name__ == "__main__":
    main()
