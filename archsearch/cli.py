"""The `archsearch` command line. Thin: each command validates its input and calls one library
function; heavy imports (torch, optuna) happen inside the command bodies.

Exit status: 0 on success, 2 on invalid input (every problem printed as `path.to.field: message`,
no traceback unless --debug), 1 on any other failure.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import ConfigError, ConfigErrors

app = typer.Typer(
    name="archsearch",
    help="Architecture search for diffusion U-Nets: validated YAML spaces, Optuna studies, loss-vs-throughput fronts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

_state = {"debug": False}


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def handles_errors(fn):
    """Turn user-input errors into `path: message` lines and exit 2; other errors exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except (ConfigErrors, ConfigError) as exc:
            if _state["debug"]:
                raise
            errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
            for error in errors:
                typer.echo(str(error), err=True)  # one unwrapped line each, for people and for grep
            raise typer.Exit(2) from None
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if _state["debug"]:
                raise
            typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            err_console.print("(run with --debug for the traceback)", style="dim")
            raise typer.Exit(1) from None

    return wrapper


def parse_sets(values: list[str] | None) -> dict[str, str]:
    """`--set a.b=value` pairs; the value is parsed as YAML (so numbers and lists work)."""
    import yaml

    out = {}
    for item in values or []:
        if "=" not in item:
            raise ConfigErrors([ConfigError("--set", f"{item!r} is not path=value")])
        path, raw = item.split("=", 1)
        try:
            out[path.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[path.strip()] = raw
    return out


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
    """Check a config file; print every problem as `path: message` (exit 2) or what it describes."""
    from .schema.files import load_any

    kind, obj = load_any(file, parse_sets(set_))
    console.print(f"[green]ok[/green]: {file} is a valid {kind}")


@app.command()
@handles_errors
def schema(
    kind: Annotated[str, typer.Argument(help="unet, space or ablation")] = "space",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of a config file kind, for editor completion of YAML."""
    from .schema.files import json_schema

    text = json.dumps(json_schema(kind), indent=2)
    if out:
        out.write_text(text + "\n")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")


@app.command()
@handles_errors
def build(
    file: Annotated[Optional[Path], typer.Argument(help="A U-Net config, or a train/space file (its architecture).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Build a shipped preset: seed, ddpm-cifar10, adm-imagenet64.")] = None,
    sample: Annotated[int, typer.Option(help="For a space file: show this many sampled networks.")] = 0,
    set_: SetOption = None,
) -> None:
    """Show the network a config builds: per-level shapes, parameter count and forward GFLOPs."""
    from .report.network import describe_configs

    if (file is None) == (preset is None):
        raise ConfigErrors([ConfigError("build", "give a FILE or --preset NAME (one of them)")])
    configs = _configs_to_build(file, preset, sample, parse_sets(set_))
    describe_configs(configs, console)


def _configs_to_build(file, preset, sample, sets):
    from .schema.files import load_any
    from .schema.loading import preset_dict, unet_config_from_dict

    if preset is not None:
        return [(f"preset {preset}", unet_config_from_dict(_apply_sets(preset_dict(preset), sets)))]
    kind, obj = load_any(file, sets)
    if kind == "U-Net config":
        return [(str(file), obj)]
    if kind in ("space file",):
        from .search.sampling import sample_configs

        if sample > 0 or not obj.is_fixed():
            return [(f"sample {i}", cfg) for i, cfg in enumerate(sample_configs(obj, max(sample, 1)))]
        return [(str(file), obj.fixed_architecture())]
    if kind == "ablation file":
        return [(name, cfg) for name, cfg in obj.variant_configs()]
    raise ConfigErrors([ConfigError(str(file), f"a {kind} describes no network")])


def _apply_sets(data: dict, sets: dict) -> dict:
    from .schema.paths import set_path

    for path, value in sets.items():
        data = set_path(data, path, value)
    return data


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
