"""The `archsearch` command line. Thin: each command validates its input and calls one library
function; heavy imports (torch, optuna) happen inside the command bodies.

Exit status: 0 on success, 2 on invalid input (every problem printed as `path.to.field: message`,
no traceback unless --debug), 1 on any other failure. How options become values, and click's own
parse failures one-line errors: archsearch.cli.options.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from ..errors import ConfigError, ConfigErrors, Interrupted, elide, excerpt
from .options import (  # noqa: F401 - WORKERS_PER_CPU, max_workers, option_bounds: read here by tests and scripts
    WORKERS_PER_CPU,
    OneLineUsageErrors,
    bounded,
    max_workers,
    option_bounds,
    parse_sets,
)

app = typer.Typer(
    name="archsearch",
    help="Architecture search for diffusion U-Nets: validated YAML spaces, Optuna studies, loss-vs-throughput fronts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,
)
console = Console()
err_console = Console(stderr=True)

_state = {"debug": False}
_LINE = 2000  # the most characters of one error line (a message quotes a user's value elided; this bounds the rest)


def version() -> str:
    """The installed distribution's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("archsearch")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"archsearch {version()}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="On an error, print the full Python traceback instead of the "
                                                        "one-line `path: message` or `error: ...` summary.")] = False,
    show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                               help="Print the version and exit.")] = False,
) -> None:
    from ..search.storage import format_storage_warnings

    _state["debug"] = debug
    format_storage_warnings()


def handles_errors(fn):
    """Turn user-input errors into `path: message` lines and exit 2; other errors exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..urls import register_url

        register_url(kwargs.get("storage"))  # whatever fails below, no line shows its password
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Interrupted as exc:  # SIGINT/SIGTERM, after the engine recorded the running trial
            err_console.print(f"interrupted ({exc}): the running trial is recorded as failed (reason: interrupted); "
                              f"run the same command again to resume")
            raise typer.Exit(exc.code) from None
        except (ConfigErrors, ConfigError) as exc:
            if _state["debug"]:
                raise
            errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
            from ..urls import redact

            for error in errors:  # one unwrapped line each, for people and for grep; short whatever the input
                typer.echo(elide(redact(str(error)), _LINE), err=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if _state["debug"]:
                raise
            from ..search.storage import describe_error

            typer.echo(f"error: {describe_error(exc)}", err=True)  # one line, the database's own words, no password
            err_console.print("(run with --debug for the traceback)", style="dim")
            raise typer.Exit(1) from None

    return wrapper


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a field: --set train.steps=50 (repeatable; value parsed as YAML)."),
]


# --------------------------------------------------------------------------- validate / schema / build


@app.command()
@handles_errors
def validate(
    file: Annotated[Path, typer.Argument(help="A U-Net config, a train or space file, or an ablation file.")],
    set_: SetOption = None,
) -> None:
    """Check a config file; print every problem as `path: message` (exit 2) or what it describes.

    Space and ablation files are checked as `run` and `ablate` check them before writing anything:
    a sample of architectures is planned, the device is resolved and the data is read."""
    from ..schema.files import load_any

    kind, obj = load_any(file, parse_sets(set_))
    detail = ""
    if kind == "space file":
        from ..search.sampling import CANDIDATE_SAMPLES, check_candidates

        valid, common = check_candidates(obj)  # none valid: exit 2 with the commonest reasons
        if common:
            detail = (f"; {valid} of {CANDIDATE_SAMPLES} sampled architectures are valid "
                      f"(commonest rejection: {common[0][0]}, {common[0][1]}x)")
    if kind in ("space file", "ablation file"):
        from ..search.preflight import check_inputs

        train_settings = obj.train if kind == "space file" else obj.train.model_dump()
        check_inputs(obj.data, obj.eval, train_settings, obj.study.device, spec=obj)  # what `run` checks before it writes
    console.print(Text.assemble(("ok", "green"), f": {file} is a valid {kind}{detail}"))


@app.command()
@handles_errors
def schema(
    kind: Annotated[str, typer.Argument(help="unet, space or ablation")] = "space",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of a config file kind, for editor completion of YAML."""
    from ..schema.files import json_schema

    text = json.dumps(json_schema(kind), indent=2)
    if out:
        from ..io import atomic_write_text

        atomic_write_text(out, text + "\n")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")


@app.command()
@handles_errors
@bounded
def build(
    file: Annotated[Optional[Path], typer.Argument(help="A U-Net config, or a train/space file (its architecture).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Build a shipped preset: seed, ddpm-cifar10, adm-imagenet64, edm-adm-imagenet64, edm-ddpmpp-cifar10, edm-ncsnpp-cifar10, edm2-img512-xs, edm2-img64-s.")] = None,
    sample: Annotated[int, typer.Option(help="For a space file: show this many sampled networks.")] = 0,
    set_: SetOption = None,
) -> None:
    """Show the network a config builds: per-level shapes, parameter count and forward GFLOPs."""
    from ..report.network import networks_to_build, print_networks

    print_networks(networks_to_build(file, preset, sample, parse_sets(set_)), console)


# --------------------------------------------------------------------------- run / results


@app.command()
@handles_errors
@bounded
def run(
    space_file: Annotated[Path, typer.Argument(metavar="SPACE", help="The space file.")],
    trials: Annotated[Optional[int], typer.Option(help="Total trials of the study (default: study.trials).")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where study folders are written.")] = Path("results"),
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (postgresql://, mysql://, or grpc://HOST:PORT for a storage-proxy); default: the study folder's journal.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (default: study.device).")] = None,
    workers: Annotated[int, typer.Option(help=f"Worker processes on this machine sharing the study (from 1 to "
                                              f"{WORKERS_PER_CPU} per usable CPU, and no more than trials).")] = 1,
    gpus: Annotated[Optional[str], typer.Option(help="GPUs for the workers, e.g. 0,1,2,3 (worker i gets the i-th).")] = None,
    set_: SetOption = None,
) -> None:
    """Run (or resume) a search: every trial builds, trains and measures one U-Net.

    Exits 1 when a worker process raised, when workers died short of the trial count, or when
    the study holds no completed trial (the commonest fail reasons are printed).
    """
    from ..report.live import StudyDisplay, front_table
    from ..report.tables import show
    from ..schema.space import load_space
    from ..folder import run_study
    from ..search.study import WorkersFailed
    from ..urls import redact

    space = load_space(space_file, parse_sets(set_))  # exits 2 before anything is written
    total = trials or space.study.trials
    if workers > total:  # a worker runs one trial at a time: the others would start torch to wait
        raise ConfigErrors([ConfigError("--workers", f"{workers} workers: must be at most {total}, the study's trials "
                                                     f"({'--trials' if trials else 'study.trials'})")])
    gpu_list = _parse_gpus(gpus)
    objectives = [o.metric for o in space.objectives]
    display = StudyDisplay(console, space.study.name, trials or space.study.trials, objectives,
                           [o.direction for o in space.objectives], enabled=console.is_terminal)
    try:
        with display:
            summary = run_study(space, results_dir, storage=storage, trials=trials, device=device, view=display,
                                workers=workers, gpus=gpu_list)
    except WorkersFailed as exc:
        for line in exc.lines:
            typer.echo(redact(line), err=True)  # one unwrapped line per worker, like every error
        raise typer.Exit(1) from None
    for line in summary.problems:  # workers that died while the others finished the study
        typer.echo(f"warning: {redact(line)}", err=True)
    front = summary.front
    if len(front):
        show(console, front_table(front, summary.objectives, title=f"Pareto front of {summary.name}"))
    else:
        console.print("no completed trial yet")
    for line in _baseline_lines(summary.baselines, summary.objectives, f"{summary.name}-baselines"):
        console.print(line, highlight=False)
    console.print(
        f"{summary.trials} trials ({summary.completed} completed"
        f"{f', {summary.stopped} stopped early' if summary.stopped else ''}), {len(front)} on the Pareto front; "
        f"results in {summary.study_dir}/ (storage: {summary.storage})"
    )
    if not summary.completed:
        typer.echo("error: no trial completed; the commonest fail reasons:", err=True)
        for count, reason in summary.fail_reasons():
            typer.echo(f"{count:5d}  {redact(reason)}", err=True)
        raise typer.Exit(1)


def _baseline_lines(table, objectives: list[str], study: str) -> list[str]:
    """One line per baseline trial of `archsearch run` (study.baselines): its objectives, or why it failed."""
    from ..report.console import format_metric

    if table is None or table.empty:
        return []
    lines = []
    for _, row in table.iterrows():
        if row["state"] == "COMPLETE":
            what = ", ".join(f"{o} {format_metric(o, float(row[o]))}" for o in objectives)
        else:
            what = f"{str(row['state']).lower()}: {row.get('fail_reason') or ''}"[:120]
        lines.append(f"baseline {row.get('baseline')}: {what} (trial #{int(row['number'])} of {study})")
    return lines


@app.command()
@handles_errors
def ablate(
    ablation_file: Annotated[Path, typer.Argument(metavar="FILE", help="The ablation file (base, variants, seeds).")],
    results_dir: Annotated[Path, typer.Option(help="Where study folders are written.")] = Path("results"),
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL; default: the study folder's journal.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (default: study.device).")] = None,
    report_only: Annotated[bool, typer.Option("--report-only", help="Train nothing; rebuild the report from the storage.")] = False,
    quality: Annotated[bool, typer.Option("--quality", help="Also measure sample quality (fd, kid, sample_precision, "
                                                           "sample_recall) and compare it with the base's; "
                                                           "eval.quality's defaults where the file has none.")] = False,
    set_: SetOption = None,
) -> None:
    """Run (or resume) an ablation: the base and every variant over several seeds, then each
    variant against the base (Δ loss and Δ throughput with 95% intervals paired by seed, and Δ
    sample quality with --quality or an eval.quality section)."""
    from ..ablation.report import comparison_table
    from ..report.tables import show
    from ..ablation.runner import ablate as run_and_report
    from ..schema.ablation import load_ablation

    spec = load_ablation(ablation_file, parse_sets(set_)).with_quality(quality)  # exits 2 before anything is written
    report = run_and_report(spec, results_dir, storage=storage, device=device, console=console, train=not report_only)
    show(console, comparison_table(report.comparisons, title=spec.study.name))
    if report.pending:
        console.print(f"[yellow]{len(report.pending)} of {spec.num_trials} trials not finished yet "
                      f"(running in another process, or left by study.timeout); rerun to complete them[/yellow]")
    console.print(f"wrote {', '.join(str(p) for p in report.files)} (storage: {report.storage})")


@app.command()
@handles_errors
def results(
    study_dir: Annotated[Optional[Path], typer.Argument(metavar="STUDY_DIR", help="A study folder (results/<name>).")] = None,
    storage: Annotated[Optional[str], typer.Option(help="A storage URL instead of a folder.")] = None,
    study: Annotated[Optional[str], typer.Option(help="The study name in the storage.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write trials.csv/.parquet (default: the study folder).")] = None,
    format: Annotated[str, typer.Option("--format", help="How to print the table: table (fitted to the terminal; "
                                                         "plain lines in a pipe), csv, json or md (every column for "
                                                         "csv and json).")] = "table",
) -> None:
    """Regenerate trials.csv and trials.parquet from the storage and print the table."""
    from ..report.console import RESULT_FORMATS, print_results
    from ..results import regenerate_tables

    if format not in RESULT_FORMATS:
        raise ConfigErrors([ConfigError("--format", f"{excerpt(format)} is not one of {', '.join(RESULT_FORMATS)}")])
    df, folder = regenerate_tables(study_dir, storage, study, out)
    print_results(df, format, console)
    err_console.print(f"wrote {folder / 'trials.csv'} and trials.parquet", style="dim")


@app.command("storage-proxy")
@handles_errors
@bounded
def storage_proxy(
    storage: Annotated[str, typer.Option(help="The database the proxy fronts: postgresql://, mysql:// (or sqlite:/// on one machine).")],
    port: Annotated[int, typer.Option(help="The port to listen on.")] = 13000,
    host: Annotated[str, typer.Option(help="The address to listen on (0.0.0.0: every interface of this machine).")] = "0.0.0.0",
) -> None:
    """Serve a database storage to many workers through Optuna's gRPC proxy, until Ctrl-C or
    SIGTERM: workers run with --storage grpc://THIS_HOST:PORT and hold no database connection."""
    from ..search.proxy import serve_proxy

    stopped_by = serve_proxy(storage, port, host, on_ready=lambda line: typer.echo(line))
    err_console.print(f"storage proxy stopped{f' ({stopped_by})' if stopped_by else ''}", style="dim")


def _parse_gpus(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigErrors([ConfigError("--gpus", f"{excerpt(text)} is not a comma-separated list of GPU indices")]) from None


@app.command()
@handles_errors
def report(
    study_dirs: Annotated[Optional[list[Path]], typer.Argument(metavar="STUDY_DIR", help="Study folders (results/<name>); several are compared.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="A storage URL instead of folders.")] = None,
    study: Annotated[Optional[str], typer.Option(help="The study name in the storage (needed when it holds several).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the report (default: the first study folder, or results/<study>).")] = None,
    samples: Annotated[bool, typer.Option("--samples/--no-samples", help="Draw a sample grid of every front member with "
                                                                         "saved weights (on the CPU, cached).")] = True,
    front: Annotated[Optional[str], typer.Option(help="Also draw the front in two recorded metrics, such as "
                                                      "fd,train_throughput_normalized (the first on the vertical axis; "
                                                      "default: the objectives' front only).")] = None,
) -> None:
    """Write report.md, report.html, pareto.csv and plots/: the Pareto front and knee (and with
    --front, the front in two metrics you pick), hypervolume over trials, which fields mattered,
    per-noise-level losses, sample quality when measured, sample grids of the front's models
    (trials/<n>/samples.png), and how everything was measured."""
    from ..report.analysis import front_metrics
    from ..report.build import make_report, print_summary

    pair = front_metrics(front) if front is not None else None
    result, files = make_report(study_dirs, storage, study, out, samples=samples, front=pair)
    print_summary(result, files, console)


# --------------------------------------------------------------------------- export


@app.command()
@handles_errors
def export(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="A study folder (with --trial), a U-Net config file "
                                                                   "or a checkpoint (.pt).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The folder to write (it appears whole or not at all).")],
    trial: Annotated[Optional[str], typer.Option(help="For a study folder: a trial number, or `knee` (the report's knee).")] = None,
    to: Annotated[str, typer.Option(help="diffusers (a UNet2DModel folder) or archsearch (config.yaml + checkpoint).")] = "diffusers",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
) -> None:
    """Export one network: to diffusers' UNet2DModel (checked to compute the same outputs, in fp32,
    before anything is written), or as a folder that `build_unet` loads."""
    from ..export import export as run_export
    from ..export import file_source, study_source

    if source.is_dir():
        if trial is None:
            raise ConfigErrors([ConfigError("--trial", f"{source} is a study folder: name a trial number or `knee`")])
        src = study_source(source, trial)
    elif trial is not None:
        raise ConfigErrors([ConfigError("--trial", f"{source} is a file, not a study folder; drop --trial")])
    else:
        src = file_source(source)
    for line in run_export(src, to, out, overwrite=overwrite).lines():
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
@handles_errors
@bounded
def verify(
    study_dir: Annotated[Optional[Path], typer.Argument(metavar="STUDY_DIR", help="A study folder (results/<name>); with "
                                                                                  "--storage, where its space.yaml is (default: results/<study>).")] = None,
    storage: Annotated[Optional[str], typer.Option(help="A storage URL instead of the folder's journal.")] = None,
    study: Annotated[Optional[str], typer.Option(help="The study name in the storage (needed when it holds several).")] = None,
    factor: Annotated[Optional[float], typer.Option(help="Retrain for factor × each trial's train.steps (default 10).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Retrain for this many steps instead (more than every trial's).")] = None,
    dominated: Annotated[int, typer.Option(help="Dominated trials to retrain beside the front, spread from best to worst.")] = 4,
    seeds: Annotated[int, typer.Option(help="2: also retrain at the original budget with the next seed (the noise floor).")] = 1,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds re-measuring the front's speed (0: none).")] = 5,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine sharing the retrains.")] = 1,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (default: the study's).")] = None,
    quality: Annotated[bool, typer.Option("--quality", help="Also measure every retrain's sample quality (eval.quality: "
                                                            "the study's section, else its defaults) and rank it against "
                                                            "the search's objective.")] = False,
) -> None:
    """Retrain the front and a sample of dominated trials longer (same data, validation and seed),
    re-measure the front's speed, and say whether the ranking held: verify.md, plots/verify-*.png,
    and the study `<name>-verify` in the same storage. Rerun to resume. With --quality, also
    whether the short-run ranking predicts the long run's sample quality (FD)."""
    from ..verify.report import print_verification
    from ..verify.runner import verify_study

    run = verify_study(study_dir, storage, study, factor=factor, steps=steps, dominated=dominated, seeds=seeds,
                       rounds=rounds, workers=workers, device=device, quality=quality, console=console)
    print_verification(run.verification, run.files, run.storage, console)
    if run.pending:
        console.print(f"[yellow]{len(run.pending)} retrains not finished (running in another process); rerun to "
                      "complete them[/yellow]")


# --------------------------------------------------------------------------- train / sample


@app.command()
@handles_errors
@bounded
def train(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="A space file without distributions; a U-Net config "
                                                                   "(with --space, or a trial's config.yaml in its "
                                                                   "study folder); or a study folder with --trial.")],
    trial: Annotated[Optional[str], typer.Option(help="For a study folder: a trial number, or `knee` (the report's "
                                                      "knee); trained with its own recorded settings.")] = None,
    space: Annotated[Optional[Path], typer.Option(help="For a U-Net config: the space file whose data, train, eval "
                                                       "and measure settings to train it under.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="The step budget (replaces train.steps, and drops a "
                                                      "train.seconds limit unless --seconds is given).")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="A training-time budget in seconds (train.seconds).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="Where state.pt, checkpoint.pt and metrics.json go (default "
                                                         "for a study trial: STUDY_DIR/trials/<n>/train-<steps>/; "
                                                         "for a file: none, and the run cannot be resumed).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run saved in the output folder.")] = False,
    eval_every: Annotated[Optional[int], typer.Option(help="Steps between evaluations (default: a tenth of "
                                                           "the steps; 0: only the final one).")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Steps between saves of the resumable state "
                                                           "(default: at every evaluation; 0: only on "
                                                           "Ctrl-C/SIGTERM).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write every metric as JSON here (default: the output "
                                                     "folder's metrics.json).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    samples: Annotated[Optional[Path], typer.Option(help="Also write a PNG grid of generated samples here.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Save the trained model here (default: the output "
                                                            "folder's checkpoint.pt; for `archsearch sample`).")] = None,
    quality: Annotated[bool, typer.Option("--quality", help="Measure sample quality (fd, kid, sample_precision, "
                                                            "sample_recall; eval.quality, its defaults where the space "
                                                            "has none) at the end, and with --eval-every at each "
                                                            "evaluation too. On without it when the space sets "
                                                            "eval.quality or an objective names fd.")] = False,
    set_: SetOption = None,
) -> None:
    """Train one network: from a space file, a U-Net config or a study's trial. Evaluates it on
    the study's validation protocol at intervals (and its sample quality, with --quality), saves a
    resumable state periodically and on Ctrl-C (then exits 130, printing the command that resumes),
    and writes its metrics and checkpoint."""
    from ..report.console import metrics_table, print_data_lines, training_progress
    from ..report.tables import show
    from ..io import WriteFailed
    from ..retrain import RunInterrupted, run_job, train_job

    job = train_job(source, trial, space, parse_sets(set_), steps, seconds)
    out_dir = out_dir or job.out_dir
    where = f", into {out_dir}/" if out_dir else ""
    where += ", resuming from its state.pt" if resume and out_dir else ""
    err_console.print(f"{job.label}: {job.train.steps} steps{where}", style="dim", markup=False, highlight=False,
                      soft_wrap=True)
    try:
        with training_progress(console, enabled=console.is_terminal, batch_size=job.train.batch_size) as display:
            run = run_job(job, device, out_dir=out_dir, resume=resume, eval_every=eval_every, save_every=save_every,
                          checkpoint_path=checkpoint, metrics_path=out, samples_path=samples,
                          on_load=functools.partial(print_data_lines, err_console), on_progress=display,
                          on_evaluated=display.evaluated, quality=quality, quality_along=eval_every is not None)
    except RunInterrupted as exc:
        _print_interrupted(exc, _resume_command(ctx))
        raise typer.Exit(exc.code) from None
    except WriteFailed as exc:  # a state save, or the metrics: the state saved before it is kept
        typer.echo(f"error: {exc}", err=True)
        _print_resumable(out_dir, ctx, "resume with")
        raise typer.Exit(1) from None
    if run.resumed_from is not None:
        console.print(f"resumed from step {run.resumed_from}")
    show(console, metrics_table(run.result.metrics.to_dict(), title=f"{job.label} on {run.result.metrics.device}"))
    if run.result.reason:
        console.print(f"[red]{run.result.reason}[/red]")
    for label, path in run.files.items():
        console.print(f"{label} written to {path}")
    if run.state_kept is not None:  # the missing files were warned of as they failed
        _print_resumable(out_dir, ctx, "write the missing files with")
    if not run.ok:
        raise typer.Exit(1)


def _print_resumable(out_dir: Path | None, ctx: typer.Context, what: str) -> None:
    from ..retrain import STATE_NAME

    state = out_dir / STATE_NAME if out_dir is not None else None
    if state is not None and state.exists():
        typer.echo(f"the training state is kept in {state}; once there is room, {what}:", err=True)
        typer.echo(f"  {_resume_command(ctx)}", err=True)


def _print_interrupted(exc, command: str) -> None:
    at = f"at step {exc.step} of {exc.total}" if exc.step is not None else "before training"
    if exc.state_path is None:
        typer.echo(f"interrupted {at}; nothing was saved to resume from (a run is resumable with --out-dir, "
                   "as a study trial's is by default)", err=True)
        return
    saved = f"at step {exc.saved_step}" if exc.saved_step is not None else "earlier"
    typer.echo(f"interrupted {at}; the training state saved {saved} is in {exc.state_path}. Resume with:", err=True)
    typer.echo(f"  {command}", err=True)


def _resume_command(ctx: typer.Context) -> str:
    """The running command as typed (rebuilt from its parsed options), with --resume."""
    import shlex

    words = ["archsearch", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words.append(str(value))
        elif value not in (None, False, (), []) and value != param.default:
            flag = max(param.opts, key=len)
            values = [] if param.is_flag else list(value) if param.multiple else [value]
            words += [flag] if param.is_flag else [w for v in values for w in (flag, str(v))]
    return shlex.join(words + ([] if "--resume" in words else ["--resume"]))


@app.command()
@handles_errors
@bounded
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint: `archsearch train`'s (its checkpoint.pt, or "
                                                    "--checkpoint), or a study's trials/<n>/checkpoint.pt.")],
    out: Annotated[Optional[Path], typer.Option(help="The PNG grid to write (default: beside the checkpoint, samples.png "
                                                     "for a checkpoint.pt, else <name>-samples.png).")] = None,
    sampler: Annotated[str, typer.Option(help="ddim or ddpm.")] = "ddim",
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 50,
    rows: Annotated[int, typer.Option()] = 8,
    cols: Annotated[int, typer.Option()] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the sampling noise.")] = 0,
    scale: Annotated[Optional[int], typer.Option(help="Enlarge each image this many times, nearest neighbour "
                                                      "(default: auto, cells of at least 64 pixels).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Write a PNG grid of images generated by a trained checkpoint (DDPM or DDIM sampling)."""
    from ..report.samples import grid_path_for
    from ..samples import sample_checkpoint
    from ..schema.loading import validate_model
    from ..schema.train import SampleConfig

    try:
        cfg = validate_model(SampleConfig, {"sampler": {"kind": sampler, "steps": steps}, "rows": rows, "cols": cols,
                                            "seed": seed})
    except ConfigErrors as exc:  # the options' names, not the schema's
        raise ConfigErrors(ConfigError("--steps" if e.path == "sampler.steps" else f"--{e.path.split('.')[0]}", e.message)
                           for e in exc.errors) from None
    if checkpoint.exists():  # a missing one is named by sample_checkpoint
        _check_grid_pixels(checkpoint, rows, cols, scale)
    out = out if out is not None else grid_path_for(checkpoint)
    sample_checkpoint(checkpoint, out, cfg, device, scale=scale)
    from PIL import Image

    with Image.open(out) as image:
        size = "×".join(map(str, image.size))
    console.print(f"wrote {out} ({rows}×{cols} {sampler} samples, {steps} steps; {size} pixels)", highlight=False,
                  soft_wrap=True)


def _check_grid_pixels(checkpoint: Path, rows: int, cols: int, scale: int | None) -> None:
    """Refuse a grid larger than Pillow opens without a decompression-bomb warning, before any
    sampling: its pixels are rows·cols·(image_size·scale)², and `--scale 100000` asks for petabytes."""
    from math import isqrt

    from PIL import Image

    from ..samples import auto_scale
    from ..schema.loading import unet_config_from_dict
    from ..train import load_checkpoint

    limit = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's own default, should a program have lifted it
    size = unet_config_from_dict(load_checkpoint(checkpoint)["config"]).image_size
    scaled = scale if scale is not None else auto_scale(size)
    pixels = rows * cols * (size * scaled) ** 2
    if pixels <= limit:
        return
    grid = f"{rows}×{cols} images of {size}×{size} pixels enlarged {scaled}× make {pixels:,} pixels, more than the " \
           f"{limit:,} of Pillow's decompression-bomb limit"
    largest = isqrt(limit // (rows * cols * size * size))
    if largest >= 1:
        raise ConfigErrors([ConfigError("--scale", f"{scaled}: {grid}; use --scale {largest} or less")])
    raise ConfigErrors([ConfigError("--rows", f"{rows}: {grid}; use fewer --rows or --cols")])
