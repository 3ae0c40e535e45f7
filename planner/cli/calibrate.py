"""`planner calibrate`: fit a cluster's calibration constants (see planner.commands.calibrate.fit), print the
residuals, write a calibrated cluster YAML (-o) and the accuracy page (--report). Its renderers
are in planner.render.calibrate."""

# No `from __future__ import annotations`: typer reads the commands' annotations on every run,
# and evaluating them from strings doubles what building a command costs at start-up.

from pathlib import Path

import typer

from planner.cli.common import emit, render_table, use_ascii, word_list
from planner.cli.options import param
from planner.errors import UsageError


def calibrate(
    measurements: str = param("measurements", "calibrate"),
    cluster: str | None = param("cluster", "calibrate"),
    bandwidth_model: str | None = param("bandwidth_model", "calibrate"),
    fit: str | None = param("fit", "calibrate"),
    engine: str | None = param("engine", "calibrate"),
    fmt: str = param("format", "calibrate"),
    output: Path | None = param("output", "calibrate"),
    report: Path | None = param("report", "calibrate"),
    other_models: str | None = param("other_models", "calibrate"),
    ascii_only: bool = param("ascii", "calibrate"),
) -> None:
    """Fit a cluster's calibration constants to measured latencies and print the residuals.

    \b
    Example:
      planner calibrate configs/measurements/pope2022-tpu-v4.yaml \\
          --cluster tpu-v4 -o my-tpu-v4.yaml
      planner calibrate vllm-result.json   # reads vllm-result.json.planner.yaml
      planner calibrate my-runs.yaml --engine vllm \\
          --fit layer_overhead_s -o my-vllm.yaml
    """
    from planner.commands.calibrate import assess as checks
    from planner.commands.calibrate import fit as cal
    from planner.config import load_model
    from planner.config.measurements import load_measurements
    from planner.render.accuracy import accuracy_page
    from planner.render.calibrate import (
        BANDWIDTH_MODELS,
        checked_yaml,
        cluster_yaml,
        residual_csv,
        residual_json,
        residual_markdown,
        residual_table,
    )

    if fmt not in ("table", "json", "csv", "markdown"):
        raise UsageError(f"--format: expected one of table, json, csv, markdown, got {fmt!r}")
    if bandwidth_model is not None and bandwidth_model not in BANDWIDTH_MODELS:
        raise UsageError(f"--bandwidth-model: expected chip or axes, got {bandwidth_model!r}")
    if other_models is not None and report is None:
        raise UsageError("--other-models is used by --report only")
    if fit is not None:
        if bandwidth_model is not None or report is not None or other_models is not None:
            raise UsageError(
                "--fit refines a cluster's constants: --bandwidth-model, --report and --other-models do not apply"
            )
        _refine(measurements, cluster, fit, output, fmt, engine)
        return
    if engine is not None:
        raise UsageError(
            "--engine: calibrate takes a profile only to refine it, with --fit NAMES on serving runs\n"
            "  hint: planner calibrate RUNS --engine vllm --fit layer_overhead_s -o my-vllm.yaml"
        )
    from planner.config.bench_results import is_bench_file, is_result_file

    if is_result_file(measurements) or is_bench_file(measurements):
        if bandwidth_model is not None or other_models is not None:
            raise UsageError(
                "benchmark results are predicted as they are: --bandwidth-model and --other-models do not apply"
            )
        _calibrate_serving(measurements, cluster, output, report, fmt, ascii_only, bench=True)
        return
    from planner.commands.calibrate.moe import is_moe_file

    if is_moe_file(measurements):
        _calibrate_moe(measurements, cluster, output)
        return
    from planner.config.serving_runs import is_serving_file

    if is_serving_file(measurements):
        if bandwidth_model is not None or other_models is not None:
            raise UsageError("a serving set is predicted as it is: --bandwidth-model and --other-models do not apply")
        _calibrate_serving(measurements, cluster, output, report, fmt, ascii_only)
        return
    from planner.config.kernel_measurements import is_kernel_file

    if is_kernel_file(measurements):
        _calibrate_kernels(measurements, cluster, output, report)
        return
    data = load_measurements(measurements)
    base, cluster_file, cluster_arg = _cluster(cluster, data)
    command = f"planner calibrate {measurements}" + (f" --cluster {cluster_arg}" if cluster else "")
    if bandwidth_model is not None:
        if cal.bandwidth_model(base) is None:
            raise UsageError(f"--bandwidth-model: {base.name} is not a torus (it has no bandwidth model)")
        base = cal.with_bandwidth_model(base, bandwidth_model)
        command += f" --bandwidth-model {bandwidth_model}"
    if report is not None:
        models = tuple(load_model(name) for name in word_list(other_models) or ())
        assessments = _both(base, data, cal)
        shipped = cal.bandwidth_model(base)
        assessment = assessments.get(shipped) or checks.assess(base, data)
        page_command = (
            f"planner calibrate {measurements}"
            + (f" --cluster {cluster_arg}" if cluster else "")
            + f" --report {report}"
            + (f" --other-models {other_models}" if other_models else "")
        )
        emit(
            accuracy_page(
                data, base, assessments, checks.elsewhere(assessment.fit.cluster, data, models), page_command
            ),
            report,
        )
    else:
        assessment = checks.assess(base, data)
    for name in assessment.fit.unidentified:
        typer.echo(
            f"warning: the data cannot identify {name} (no prediction depends on it); it keeps its default", err=True
        )
    if output is not None:
        emit(
            checked_yaml(cluster_yaml(cluster_file.read_text(encoding="utf-8"), assessment, data, command), assessment),
            output,
        )
    if fmt == "table":
        render_table(lambda console: residual_table(data, assessment, console, use_ascii(ascii_only)), None)
        return
    render = {"markdown": residual_markdown, "csv": residual_csv, "json": residual_json}[fmt]
    typer.echo(render(data, assessment), nl=False)


def _calibrate_serving(
    measurements: str,
    cluster: str | None,
    output: Path | None,
    report: Path | None,
    fmt: str,
    ascii_only: bool,
    bench: bool = False,
) -> None:
    """A serving set (`format: planner-serving/1`): the engine profiles and MTP's accepted length
    fitted (planner.commands.calibrate.engines), then each run predicted with its engine's profile
    (planner.commands.calibrate.serving); the profiles are printed as configs/engines/ ships them.
    Benchmark result files with their sidecar (`format: planner-bench/1`, planner.config.bench_results)
    are predicted with the shipped profiles: nothing is fitted to them."""
    from planner.commands.calibrate.engines import fit_serving, shipped_assessment
    from planner.config.bench_results import load_bench_results
    from planner.config.serving_runs import load_serving_measurements
    from planner.render import calibrate_serving as render

    if cluster is not None or output is not None:
        what = "a benchmark sidecar names the cluster" if bench else "a serving set names each run's cluster"
        raise UsageError(
            f"{what} and fits engine profiles, not a cluster: --cluster and -o do not apply (the profiles "
            "are printed as configs/engines/ ships them)"
        )
    data = (load_bench_results if bench else load_serving_measurements)(measurements)
    assessment = shipped_assessment(data) if bench else fit_serving(data)
    if report is not None:
        emit(render.accuracy_page(data, assessment, f"planner calibrate {measurements} --report {report}"), report)
    if fmt == "table":
        render_table(lambda console: render.serving_table(data, assessment, console, use_ascii(ascii_only)), None)
        return
    writer = {"markdown": render.serving_markdown, "csv": render.serving_csv, "json": render.serving_json}[fmt]
    typer.echo(writer(data, assessment), nl=False)


def _calibrate_kernels(measurements: str, cluster: str | None, output: Path | None, report: Path | None) -> None:
    """A file with row kinds (GPU kernel and end-to-end tables): planner.commands.calibrate.kernels."""
    from planner.commands.calibrate.kernels import fit
    from planner.config.kernel_measurements import load_kernel_measurements
    from planner.render.calibrate_kernels import accuracy_section, cluster_yaml, report_text

    data = load_kernel_measurements(measurements)
    base, cluster_file, cluster_arg = _cluster(cluster, data)
    result = fit(base, data)
    command = f"planner calibrate {measurements}" + (f" --cluster {cluster_arg}" if cluster else "")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if output is not None:
        emit(cluster_yaml(cluster_file.read_text(encoding="utf-8"), result, data, command), output)
    if report is not None:
        emit(accuracy_section(data, result, command + f" --report {report}"), report)
    typer.echo(report_text(data, result), nl=False)


def _calibrate_moe(measurements: str, cluster: str | None, output: Path | None) -> None:
    """A MoE kernel file (DeepEP and DeepGEMM tables): planner.commands.calibrate.moe."""
    from planner.commands.calibrate.moe import check_cluster, fit_moe, load_moe_tables, moe_yaml_block, with_moe_block
    from planner.config import load_cluster
    from planner.config.presets import locate as _locate

    if cluster is None:
        raise UsageError("--cluster is required with a MoE kernel file (e.g. --cluster h800-sxm)")
    base = load_cluster(cluster)
    check_cluster(base, measurements)
    result = fit_moe(base, load_moe_tables(measurements))
    command = f"planner calibrate {measurements} --cluster {cluster}"
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if output is not None:
        emit(
            with_moe_block(_locate("clusters", cluster).read_text(encoding="utf-8"), moe_yaml_block(result, command)),
            output,
        )
    for row in result.rows:
        typer.echo(
            f"{row.table}  {row.label}: measured {row.measured_s * 1e6:.1f} us, predicted "
            f"{row.predicted_s * 1e6:.1f} us ({100 * row.error:+.1f}%){'' if row.fitted else ', shown'}"
        )


def _refine(
    measurements: str, cluster: str | None, names_text: str, output: Path | None, fmt: str, engine: str | None
) -> None:
    """`--fit NAMES`: refit only the named constants of --cluster to a points file
    (planner.commands.calibrate.refine); every other constant kept as the cluster file has it.
    Serving runs or benchmark results refine an engine profile instead (`_refine_profile`)."""
    from planner.commands.calibrate.refine import REFINABLE, refine, unused, usable
    from planner.config.bench_results import is_bench_file, is_result_file
    from planner.config.flagtext import word_list
    from planner.config.measurements import load_measurements
    from planner.config.serving_runs import is_serving_file
    from planner.render.calibrate_refine import refined_yaml, report_json, report_text

    if fmt not in ("table", "json"):
        raise UsageError(f"--format: --fit writes table or json, got {fmt!r}")
    names = word_list(names_text) or ()
    if not names:
        raise UsageError(f"--fit: name at least one constant ({', '.join(REFINABLE)})")
    if len(set(names)) != len(names):
        raise UsageError("--fit: a constant is named twice")
    bench = is_result_file(measurements) or is_bench_file(measurements)
    if bench or is_serving_file(measurements):
        _refine_profile(measurements, cluster, names, output, fmt, engine, bench)
        return
    if engine is not None:
        raise UsageError(
            f"--engine: {measurements} is a points file, whose --fit refits the cluster's constants; an engine "
            "profile is refitted from serving runs (a planner-serving/1 file or benchmark results)\n"
            "  hint: drop --engine, or see docs/calibration.md, 'Refining an engine profile'"
        )
    data = load_measurements(measurements)
    base, cluster_file, cluster_arg = _cluster(cluster, data)
    _check_names(names, usable(base), unused(base), base.name)
    result = refine(base, data.points, names)
    command = f"planner calibrate {measurements} --cluster {cluster_arg} --fit {','.join(names)}"
    for name in result.unidentified:
        typer.echo(
            f"warning: the points cannot identify {name} (no prediction depends on it across its range or near its "
            "value); it keeps the cluster's value",
            err=True,
        )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.underdetermined:
        typer.echo(
            f"warning: {len(data.points)} point(s) for {len(result.fitted)} constants: the fit is underdetermined "
            "(the constants move from the cluster's values only as far as the points need)",
            err=True,
        )
    typer.echo(f"kept as {base.name} has them: {', '.join(result.kept)}", err=True)
    if output is not None:
        emit(refined_yaml(cluster_file.read_text(encoding="utf-8"), result, command), output)
    typer.echo((report_json if fmt == "json" else report_text)(data, result, names), nl=False)


def _check_names(names, allowed, unused: dict, cluster: str) -> None:
    """Exit 2 on a --fit name that is not a constant, or one `cluster`'s cost model does not use."""
    from planner.errors import did_you_mean

    for name in names:
        if name in unused:
            raise UsageError(
                f"--fit: {name} is not used by {cluster}'s cost model: {unused[name]}\n"
                f"  hint: one of {', '.join(allowed)} (a level's constants are fitted to collective tables)"
            )
        if name not in allowed:
            hint = did_you_mean(name, allowed) or f"one of {', '.join(allowed)}"
            raise UsageError(f"--fit: {name!r} is not a constant calibrate can refit\n  hint: {hint}")


def _refine_profile(
    measurements: str,
    cluster: str | None,
    names: tuple[str, ...],
    output: Path | None,
    fmt: str,
    engine: str | None,
    bench: bool,
) -> None:
    """`--engine PROFILE --fit NAMES` on serving runs or benchmark results: refit only the named
    constants of the profile (and chip constants of the cluster, if named;
    planner.commands.calibrate.refine_serving); every other constant of both kept as their files
    have them; -o writes the refined profile (or, for chip constants, the refined cluster)."""
    from planner.commands.calibrate.refine import unused
    from planner.commands.calibrate.refine_serving import CHIP, FITTABLE, refine_profile, same_hardware
    from planner.config import load_cluster
    from planner.config.bench_results import load_bench_results
    from planner.config.engines import engine_names, load_engine
    from planner.config.presets import locate as _locate
    from planner.config.serving_runs import load_serving_measurements
    from planner.errors import did_you_mean
    from planner.render.calibrate_refine_serving import (
        cluster_yaml,
        profile_yaml,
        report_json,
        report_text,
        scalar_texts,
    )
    from planner.specs.engine import ENGINE_FIELDS

    what = "benchmark results" if bench else "a serving-runs file"
    for name in names:
        if name not in FITTABLE:
            hint = did_you_mean(name, FITTABLE) or f"one of {', '.join(FITTABLE)}"
            raise UsageError(f"--fit: {name!r} is not a constant calibrate can refit\n  hint: {hint}")
    chip = [n for n in names if n in CHIP]
    if chip and len(chip) < len(names) and output is not None:
        raise UsageError(
            f"--fit: {', '.join(chip)} {'is a chip constant' if len(chip) == 1 else 'are chip constants'} of the "
            "cluster and the others the engine profile's; -o writes one file\n  hint: refit the chip constants "
            "first (-o my-cluster.yaml), then the profile's with --cluster my-cluster.yaml"
        )
    if engine is None:
        raise UsageError(
            f"--engine is required with --fit on {what}: the profile the runs are predicted with (and whose "
            f"constants {', '.join(ENGINE_FIELDS)} are refitted)\n"
            f"  hint: --engine {' | '.join(n for n in engine_names() if n != 'static-batch')} (the engine that "
            "ran them), or a profile YAML"
        )
    data = (load_bench_results if bench else load_serving_measurements)(measurements)
    given = None
    if cluster is not None:
        given = load_cluster(cluster)
        other = next((r for r in data.runs if not same_hardware(r.cluster, given)), None)
        if other is not None:
            raise UsageError(
                f"--cluster {cluster}: {data.file} line {other.line} ran on {other.cluster.name}, other hardware "
                f"than {given.name}\n  hint: pass --cluster {other.cluster.name}, a cluster file of that hardware "
                "(e.g. one calibrate wrote with -o), or leave --cluster out"
            )
    elif chip and len({r.cluster.name for r in data.runs if r.steady}) > 1:
        raise UsageError(
            f"--fit {', '.join(chip)}: the runs of {data.file} ran on several clusters; a chip constant is one "
            "cluster's\n  hint: pass --cluster NAME and runs of that cluster only"
        )
    on = given or next((r.cluster for r in data.runs if r.steady), None)
    if chip and on is not None:
        skip = unused(on)
        _check_names(names, tuple(n for n in FITTABLE if n not in skip), skip, on.name)
    base = load_engine(engine)
    result = refine_profile(data, base, names, given)
    command = (
        f"planner calibrate {measurements}"
        + (f" --cluster {cluster}" if cluster else "")
        + f" --engine {engine} --fit {','.join(names)}"
        + (f" -o {output}" if output is not None else "")
    )
    for name in result.unidentified:
        typer.echo(
            f"warning: the runs cannot identify {name} (no fitted prediction depends on it); it keeps its value",
            err=True,
        )
    if result.underdetermined:
        typer.echo(
            f"warning: {len(result.after)} run(s) for {len(result.fitted)} constants: the fit is underdetermined "
            "(the constants move from their values only as far as the runs need)",
            err=True,
        )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    kept = ", ".join(result.kept) or "none"
    typer.echo(
        f"kept as {base.name} has them: {kept}; "
        + (
            f"of {result.cluster.name}, as its file has them: {', '.join(result.kept_cluster)}"
            if result.cluster is not None
            else f"every constant of {', '.join(result.clusters)} as its file has it"
        ),
        err=True,
    )
    if output is not None and chip:
        source = _locate("clusters", cluster or result.clusters[0])
        emit(cluster_yaml(source.read_text(encoding="utf-8"), result, command), output)
    elif output is not None:
        texts = {}
        if base.borrowed_from:
            texts = scalar_texts(_locate("engines", base.borrowed_from).read_text(encoding="utf-8"))
        texts.update(scalar_texts(_locate("engines", engine).read_text(encoding="utf-8")))
        emit(profile_yaml(result, texts, command, str(output)), output)
    typer.echo((report_json if fmt == "json" else report_text)(data, result, names), nl=False)


def _cluster(flag: str | None, data):
    """(cluster, its file, how it was named): from --cluster, else the measurements file's."""
    from planner.config import load_cluster
    from planner.config.presets import locate as _locate

    if flag is None and data.cluster is None:
        raise UsageError("--cluster is required: the measurements file names no cluster")
    named = None
    if data.cluster is not None:
        at = data.at.child(next(v for k, v in data.at.node.value if k.value == "cluster"), "cluster")
        folder = Path(data.file).parent
        named = load_cluster(data.cluster, base=folder, at=at)
        if flag is None:
            return named, _locate("clusters", data.cluster, folder, at), data.cluster
    given = load_cluster(flag)
    if named is not None and (given.chip != named.chip or type(given.topology) is not type(named.topology)):
        raise at.error(
            f"the measurements were taken on {named.name} ({named.chip.name}), but --cluster "
            f"{flag} is other hardware ({given.chip.name})",
            hint=f"pass --cluster {data.cluster}, or a cluster file of that hardware (e.g. one it wrote with -o)",
        )
    return given, _locate("clusters", flag), flag


def _both(base, data, cal) -> dict:
    from planner.commands.calibrate import assess as checks
    from planner.render.calibrate import BANDWIDTH_MODELS

    if cal.bandwidth_model(base) is None:
        return {None: checks.assess(base, data)}
    return {model: checks.assess(cal.with_bandwidth_model(base, model), data) for model in BANDWIDTH_MODELS}
