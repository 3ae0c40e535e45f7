"""`planner models import`: a Hugging Face config.json to the equivalent planner model YAML."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from pathlib import Path

import typer

from planner.cli.common import PlainUsage, emit
from planner.cli.options import param

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 88},
    help="Models: bring a Hugging Face config.json into the planner's model YAML.",
)


@app.command("import", cls=PlainUsage)
def import_config(config: str = param("config", "models"), output: Path | None = param("output", "models")) -> None:
    """Write the planner model YAML equivalent to a Hugging Face config.json, for review.

    Read offline. The YAML starts with a comment listing every value that was derived (head
    size), taken from the configuration class's defaults or mapped (activation to ffn kind,
    layer types to local layers); loading it gives the same model as planning with the
    config.json itself (--model CONFIG).

    \b
    Example:
      planner models import ./Llama-3.1-70B/config.json -o configs/models/my-llama.yaml
    """
    from planner.config.models import import_hf_yaml

    emit(import_hf_yaml(Path(config)), output)
