"""The command line (only this package imports typer): one module per command, `common` for what
they share, `main` for the app and the `planner` console script."""
