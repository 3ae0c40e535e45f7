"""The package's shape: no import cycles, only the CLI imports typer, modules a reader can take in
one sitting. Imports are read with `ast` (top-level and function-level alike: a lazy import is
still a dependency)."""

import ast
from pathlib import Path

import pytest

import planner

ROOT = Path(planner.__file__).resolve().parent
# ruff format spreads a call that does not fit on one line over one line per argument: about a
# fifth more lines than the dense style the limit of 400 was set for
MAX_LINES = 500
LONGER = {"planner.config.options": 700}  # a table of data: one entry per command-line option


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The planner modules `name` imports: `import a.b`, `from a import b` (b a module or a
    name in a), relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    GRAPH["planner.units"].add("planner.errors")
    GRAPH["planner.errors"].add("planner.units")
    try:
        assert _cycle() is not None
    finally:
        GRAPH["planner.units"].discard("planner.errors")
        GRAPH["planner.errors"].discard("planner.units")


def _third_party(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_cli_imports_typer_and_only_cli_and_renderers_import_rich(name):
    imported = _third_party(MODULES[name])
    if not name.startswith("planner.cli"):
        assert "typer" not in imported and "click" not in imported
    if not name.startswith(("planner.cli", "planner.render")):
        assert "rich" not in imported


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable_in_one_sitting(name):
    lines, limit = MODULES[name].read_text(encoding="utf-8").count("\n"), LONGER.get(name, MAX_LINES)
    assert lines <= limit, f"{name} has {lines} lines (more than {limit}); split it by concern"


def test_the_layers_point_one_way():
    """specs < cost < config < search < commands < render < cli: a module imports only its own
    layer or those before it (errors and units are shared by all)."""
    order = ["specs", "cost", "config", "search", "commands", "render", "cli"]
    rank = {layer: i for i, layer in enumerate(order)}

    def layer(module: str) -> int | None:
        parts = module.split(".")
        return rank.get(parts[1]) if len(parts) > 1 else None

    wrong = [
        (a, b)
        for a, targets in GRAPH.items()
        for b in targets
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)
    ]
    assert not wrong, wrong


# --- options: one definition per flag (issue 23) ----------------------------------------------

PLANNING_COMMANDS = ("plan", "explain", "serve", "compare")


def _typer_parameters(path: Path) -> list[str]:
    """typer.Option(...) and typer.Argument(...) calls in `path`, as 'file:line'."""
    return [
        f"{path.relative_to(ROOT.parent)}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("Option", "Argument")
        and getattr(node.func.value, "id", "") == "typer"
    ]


def test_options_are_declared_in_one_place():
    """Every option is an entry of planner.config.options.OPTIONS; only planner.cli.options turns
    entries into typer parameters, so no command declares a parameter of its own (the app's
    own --version aside)."""
    assert _typer_parameters(MODULES["planner.cli.options"])  # the check sees what it looks for
    assert [
        where for name, path in MODULES.items() if name != "planner.cli.options" for where in _typer_parameters(path)
    ] == [f"planner/cli/main.py:{_version_line()}"]


def _version_line() -> int:
    """The line of the typer.Option(...) call that declares --version."""
    tree = ast.parse(MODULES["planner.cli.main"].read_text(encoding="utf-8"))
    return next(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and a.value == "--version" for a in node.args)
    )


def _click_params(command: str, rebuild: bool = False):
    """The click parameters of `planner COMMAND`; `rebuild`: built from the registry as it is now."""
    import typer

    from planner.cli import main

    if not rebuild:
        return typer.main.get_command(main.new_app([command])).commands[command].params
    from planner.cli.options import command as build

    body = getattr(main, command).__dict__[command].body
    app = typer.Typer()
    app.command(command)(build(command)(body))
    app.command("other")(lambda: None)
    return typer.main.get_command(app).commands[command].params


@pytest.mark.parametrize("command", PLANNING_COMMANDS)
def test_every_planning_command_takes_every_planning_option(command):
    from planner.config.options import planning

    taken = {flag for p in _click_params(command) for flag in p.opts}
    missing = [o.flags for o in planning() if not set(o.flags) <= taken]
    assert missing == [], f"planner {command} lacks {missing}"


def test_the_override_record_has_one_field_per_planning_option():
    """PlanOverrides (what load_plan takes) and the registry's planning options are one list, in
    one file: a planning flag is one entry and one field there, its merge in config/plans.py and
    the spec field it sets - at most three files."""
    from dataclasses import fields

    from planner.config import options

    assert [f.name for f in fields(options.PlanOverrides)] and {f.name for f in fields(options.PlanOverrides)} == {
        o.name for o in options.planning()
    }
    assert options.PlanOverrides.__module__ == options.Option.__module__ == "planner.config.options"


def test_a_new_planning_option_reaches_every_planning_command(monkeypatch):
    """Adding an entry to the registry is all a command needs: each planning command's --help
    lists it and its record carries it (nothing in planner/cli changes)."""
    from planner.cli.options import Options
    from planner.config import options

    extra = options.Option(
        name="warmup_tokens", flags=("--warmup-tokens",), metavar="TOKENS", help="A new planning option.", plans=True
    )
    monkeypatch.setattr(options, "OPTIONS", options.OPTIONS + (extra,))
    monkeypatch.setattr(options, "BY_NAME", {**options.BY_NAME, extra.name: extra})
    for command in PLANNING_COMMANDS:
        assert any("--warmup-tokens" in p.opts for p in _click_params(command, rebuild=True)), command
    opts = Options("plan", {o.name: o.default for o in options.for_command("plan")})
    assert opts.warmup_tokens is None


# --- private names and feature packages (issue 23) ---------------------------------------------


def _private_imports() -> list[tuple[str, str, str]]:
    """(importer, module, name) for every `from planner... import _name` between modules."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("planner"):
                found += [
                    (name, node.module, a.name)
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_private_name_crosses_modules():
    """A name with a leading underscore is its module's own: another module that needs it needs a
    public name (imported under a private alias is fine: the alias is the importer's)."""
    assert _private_imports() == []


FEATURES = ("planner.commands.calibrate", "planner.commands.serve", "planner.commands.compare", "planner.commands.emit")
# a feature package may read another where the feature is about the other's results
FEATURE_READS = {
    "planner.commands.compare": {"planner.commands.serve"},  # the gate on saved serve runs
    "planner.commands.calibrate": {"planner.commands.serve"},
    # launches serve's rows; predicts its benchmark as calibrate will read the result
    "planner.commands.emit": {"planner.commands.serve", "planner.commands.calibrate"},
}  # serving runs predicted as serve does


def _feature(module: str) -> str | None:
    return next((f for f in FEATURES if module == f or module.startswith(f + ".")), None)


def test_each_feature_package_is_imported_only_from_the_layers_above_it():
    """calibrate, serve and compare each live in one package under commands/. Only render/ and cli/
    (the layers above) and the package itself import it; a feature reads another only where listed."""
    wrong = []
    for importer, targets in GRAPH.items():
        for target in targets:
            feature = _feature(target)
            if feature is None or _feature(importer) == feature:
                continue
            above = importer.startswith(("planner.render", "planner.cli"))
            allowed = feature in FEATURE_READS.get(_feature(importer) or "", set())
            if not (above or allowed):
                wrong.append((importer, target))
    assert wrong == []
