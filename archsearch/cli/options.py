"""What the command line gives, as values or as one-line errors: `--set` pairs, the bounds of
every numeric option (those of the schema field it stands for), and click's own parse failures
(`--trials twelve`, `--tirals 5`, a missing argument) as one `--option: message` line with exit 2.
"""

from __future__ import annotations

import functools
import sys

import typer

from ..errors import ConfigError, ConfigErrors, excerpt

__all__ = ["OneLineUsageErrors", "parse_sets", "WORKERS_PER_CPU", "max_workers", "option_bounds", "bounded"]


class OneLineUsageErrors(typer.core.TyperGroup):
    """An option click cannot parse (`--trials true`, `--tirals 5`, a missing argument) is bad
    input like any other: one `--option: message` line and exit 2, not click's usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        import importlib

        clicks = importlib.import_module(typer.BadParameter.__module__)  # click's exceptions, as typer ships them
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except clicks.NoArgsIsHelpError:  # `archsearch` alone: the help, as click gives it
            return super().main(args, prog_name, complete_var, standalone_mode=True, **extra)
        except clicks.UsageError as exc:
            typer.echo(_usage_line(exc), err=True)
            sys.exit(exc.exit_code)
        except clicks.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # an Exit's status; a command's return is success


def _usage_line(exc) -> str:
    """`--trials: Input should be a valid integer ...`: the parameter, then click's words, on one line."""
    from ..errors import elide

    param, name = getattr(exc, "param", None), getattr(exc, "option_name", None) or ""
    if param is not None:
        name = max(param.opts, key=len) if param.param_type_name == "option" else (param.metavar or param.name.upper())
    message = " ".join(exc.format_message().split())
    for prefix in (f"Invalid value for '{name}': ", f"Invalid value for {name}: ", f"Option '{name}' "):
        message = message.removeprefix(prefix)
    message = message.replace(f"No such option: {name}", "no such option").replace("Possible options:", "did you mean")
    if message.startswith(("Missing parameter", "Missing argument")):
        message = "missing (a required argument)"
    command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "archsearch"
    line = f"{name}: {message}" if name else message
    return elide(line, 2000) + f" (`{command} --help` lists the options)"


def parse_sets(values: list[str] | None) -> dict[str, object]:
    """`--set a.b=value` pairs; the value is parsed as YAML (so numbers and lists work) under the
    rules of a config file. A malformed path (`train..steps`) or one given twice is an error."""
    from ..schema.paths import path_problem
    from ..schema.yaml_file import read_yaml_value

    out: dict[str, object] = {}
    errors = []
    for item in values or []:
        path, is_pair, raw = item.partition("=")
        path = path.strip()
        if not is_pair:
            errors.append(ConfigError("--set", f"{excerpt(item)} is not path=value"))
            continue
        problem = path_problem(path)
        if problem:
            errors.append(ConfigError("--set", f"{excerpt(item)}: {problem}; write dotted field names such as "
                                               "train.steps or levels.0.width"))
            continue
        if path in out:
            errors.append(ConfigError("--set", f"{excerpt(item)}: sets {path} a second time; give each path once"))
            continue
        try:
            out[path] = read_yaml_value(raw, "--set")
        except ConfigErrors as exc:
            errors += [ConfigError("--set", f"{excerpt(item)}: {e.message}") for e in exc.errors]
    if errors:
        raise ConfigErrors(errors)
    return out


# --------------------------------------------------------------------------- numeric options

# Worker processes per usable CPU at most: each holds its own torch and data, and trains on its
# share of the cores (or feeds one GPU); past this they only queue for the cores.
WORKERS_PER_CPU = 2


def max_workers() -> int:
    """The most worker processes `run` and `verify` start on this machine."""
    from ..load import cpu_count

    return WORKERS_PER_CPU * cpu_count()


def option_bounds() -> dict[str, dict[str, object]]:
    """Every int and float option of every command, by command: the values it takes, as a
    `Bound` (the schema field it stands for, or limits of its own), or as the name of the check
    that holds its whole range in words of its own. `bounded` applies them before a command
    starts; tests/test_cli_bounds.py checks that no numeric option is left out."""
    from ..load import cpu_count
    from ..schema._base import MAX_IMAGE_SIZE
    from ..schema.options import Bound

    workers = Bound(low=1, high=max_workers(), unit="workers",
                    why=f"{WORKERS_PER_CPU} per usable CPU; this machine has {cpu_count()}")
    verify_checks = "archsearch.verify.runner.check_options"
    sample_config = "archsearch.schema.train.SampleConfig (eval.samples)"
    return {
        "build": {"sample": "archsearch.report.network.configs_to_build (0 to 1000)"},
        "run": {"trials": Bound("study.trials"), "workers": workers},  # and no more workers than trials: `run`
        "verify": {"factor": verify_checks, "steps": Bound("train.steps"), "dominated": Bound("study.trials", low=0),
                   "seeds": verify_checks, "rounds": verify_checks, "workers": workers},
        "train": {"steps": Bound("train.steps"), "seconds": Bound("train.seconds"),
                  "eval_every": Bound("train.steps", low=0), "save_every": Bound("train.steps", low=0)},
        "sample": {"steps": Bound("eval.samples.sampler.steps"), "rows": sample_config, "cols": sample_config,
                   "seed": sample_config,  # and the grid's pixels: `sample`
                   "scale": Bound(low=1, high=MAX_IMAGE_SIZE, why="a pixel no wider than the largest image_size")},
        "storage-proxy": {"port": "archsearch.search.proxy.serve_proxy (1 to 65535)"},
    }


def bounded(fn):
    """Refuse every numeric option of the command outside `option_bounds()`, before it starts."""
    command = fn.__name__.replace("_", "-")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        errors = []
        for name, bound in option_bounds()[command].items():
            problem = None if isinstance(bound, str) or kwargs.get(name) is None else bound.problem(kwargs[name])
            if problem:
                errors.append(ConfigError("--" + name.replace("_", "-"), problem))
        if errors:
            raise ConfigErrors(errors)
        return fn(*args, **kwargs)

    return wrapper
