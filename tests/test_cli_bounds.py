"""Every number given on the command line is bounded, by the schema field it stands for.

The app's commands are walked with typer's click introspection: each int or float option must have an
entry in `option_bounds()`, and must refuse a value beyond either end, and NaN, with exit 2 and
a `--option: ...` line before the command does anything. `--trials 99999999999999999999999`
once started a study, and `sample --scale 100000` tried to allocate 164 TB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from archsearch.cli import WORKERS_PER_CPU, app, max_workers, option_bounds
from archsearch.schema.options import Bound

runner = CliRunner()
COMMANDS = get_command(app).commands



def number_type(param) -> type | None:
    """int or float for a numeric option (typer's own descriptor, or click's parameter type), else None."""
    if param.param_type_name != "option":
        return None
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation if descriptor.annotation in (int, float) else None
    name = type(getattr(param, "type", None)).__name__  # click: IntParamType, IntRange, FloatParamType, ...
    return int if name.startswith("Int") else float if name.startswith("Float") else None


NUMERIC = [(name, param) for name, command in sorted(COMMANDS.items()) for param in command.params if number_type(param)]

# What each command needs to reach its option checks (nothing here exists: nothing may be read).
ARGS = {"build": ["nowhere.yaml"], "run": ["nowhere.yaml"], "verify": ["nowhere"], "train": ["nowhere.yaml"],
        "sample": ["nowhere.pt"], "storage-proxy": ["--storage", "sqlite:///nowhere.db"]}

SPACE = {"study": {"name": "bounds", "trials": 2}, "data": {"max_images": 64}, "train": {"steps": 2, "batch_size": 8},
         "eval": {"num_images": 8, "timesteps": 5, "timesteps_per_image": 1, "buckets": 1, "curve_points": 0},
         "architecture": {"levels": [{"width": 8, "blocks": 1}], "block": {"norm": {"groups": 4}},
                          "middle": {"blocks": 1, "attention": False}}}


def flag(param) -> str:
    return max(param.opts, key=len)


def test_the_walk_finds_the_numeric_options():
    found = {(command, flag(param)) for command, param in NUMERIC}
    assert {("run", "--trials"), ("run", "--workers"), ("verify", "--factor"), ("train", "--seconds"),
            ("sample", "--scale"), ("storage-proxy", "--port"), ("build", "--sample")} <= found
    assert len(NUMERIC) >= 18


def test_every_numeric_option_has_bounds_and_every_bound_an_option():
    table = option_bounds()
    options = {(command, param.name) for command, param in NUMERIC}
    declared = {(command, name) for command, names in table.items() for name in names}
    assert options == declared, f"missing: {options - declared}; stale: {declared - options}"
    for command, names in table.items():
        for name, bound in names.items():
            if isinstance(bound, Bound):
                low, high = bound.limits()
                assert low is not None and high is not None, (command, name)
            else:  # checked by the command itself: the behaviour is tested below all the same
                assert isinstance(bound, str) and bound, (command, name)


def invoke(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = runner.invoke(app, [str(a) for a in args])
    assert set(tmp_path.rglob("*")) == before, f"{args} wrote {set(tmp_path.rglob('*')) - before}"
    return result


def value_beyond(param, end: str) -> str:
    if end == "nan":
        return "nan"
    return ("-" if end == "low" else "") + ("99999999999999999999999" if number_type(param) is int else "1e300")


CASES = [(command, param, end) for command, param in NUMERIC
         for end in ("low", "high") + (("nan",) if number_type(param) is float else ())]


@pytest.mark.parametrize("command,param,end", CASES, ids=[f"{c}{flag(p)}-{e}" for c, p, e in CASES])
def test_a_number_beyond_its_bounds_is_refused_first(tmp_path, monkeypatch, command, param, end):
    result = invoke(tmp_path, monkeypatch, [command, *ARGS[command], flag(param), value_beyond(param, end)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"{flag(param)}: "), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args,says", [
    (["run", "x.yaml", "--trials", "99999999999999999999999"],
     "--trials: 99999999999999999999999: must be at most 1000000000 (the limit of study.trials)"),
    (["run", "x.yaml", "--trials", "0"], "--trials: 0: must be at least 1"),
    (["train", "x.yaml", "--steps", "0"], "--steps: 0: must be at least 1"),  # one line, not click's box
    (["train", "x.yaml", "--seconds", "0"], "--seconds: 0: must be above 0"),
    (["train", "x.yaml", "--seconds", "inf"], "--seconds: inf: must be a finite number"),
    (["train", "x.yaml", "--eval-every", "-1"], "--eval-every: -1: must be at least 0"),
    (["verify", "x", "--dominated", "10000000000"], "--dominated: 10000000000: must be at most 1000000000"),
    (["sample", "x.pt", "--scale", "100000"], "--scale: 100000: must be at most 4096"),
    (["sample", "x.pt", "--steps", "10000000"], "--steps: 10000000: must be at most 1000000"),
    (["sample", "x.pt", "--rows", "65"], "--rows: Input should be less than or equal to 64"),
])
def test_the_message_names_the_limit(tmp_path, monkeypatch, args, says):
    result = invoke(tmp_path, monkeypatch, args)
    assert result.exit_code == 2 and result.output.startswith(says), result.output


def test_every_problem_is_listed_at_once(tmp_path, monkeypatch):
    result = invoke(tmp_path, monkeypatch, ["train", "x.yaml", "--steps", "0", "--save-every", "10000000000"])
    assert result.output.splitlines() == ["--steps: 0: must be at least 1",
                                          "--save-every: 10000000000: must be at most 1000000000 (the limit of train.steps)"]


@pytest.mark.parametrize("command,option", [("run", "--trials"), ("train", "--steps"), ("sample", "--scale")])
def test_a_boolean_is_not_a_number_here_either(tmp_path, monkeypatch, command, option):
    result = invoke(tmp_path, monkeypatch, [command, *ARGS[command], option, "true"])
    assert result.exit_code == 2 and option in result.output, result.output


@pytest.mark.parametrize("command,param", NUMERIC, ids=[f"{c} {flag(p)}" for c, p in NUMERIC])
def test_what_click_cannot_parse_is_one_line_too(tmp_path, monkeypatch, command, param):
    for tail in ([flag(param), "twelve"], [flag(param)], ["--no-such-option", "1"]):  # not a number, no value, unknown
        result = invoke(tmp_path, monkeypatch, [command, *ARGS.get(command, []), *tail])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"{tail[0]}: "), result.output
        assert lines[0].endswith(f"(`archsearch {command} --help` lists the options)") or tail == [flag(param)]
    missing = runner.invoke(app, [command])
    if command != "storage-proxy":  # its one required input is an option
        assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1, missing.output


@pytest.fixture
def space_file(tmp_path) -> Path:
    path = tmp_path / "bounds.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


@pytest.mark.parametrize("args,says", [
    (["--trials", "1", "--workers", "2"], "--workers: 2 workers: must be at most 1, the study's trials (--trials)"),
    (["--workers", "3"], "--workers: 3 workers: must be at most 2, the study's trials (study.trials)"),
])
def test_workers_are_no_more_than_the_trials(space_file, tmp_path, monkeypatch, args, says):
    result = invoke(tmp_path, monkeypatch, ["run", space_file, "--results-dir", "results", *args])
    assert result.exit_code == 2 and result.output.startswith(says), result.output


@pytest.mark.parametrize("command", ["run", "verify"])
def test_workers_are_no_more_than_a_few_per_cpu(tmp_path, monkeypatch, command):
    too_many = max_workers() + 1
    result = invoke(tmp_path, monkeypatch, [command, *ARGS[command], "--workers", too_many])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"--workers: {too_many} workers: must be at most {max_workers()} "
                                    f"({WORKERS_PER_CPU} per usable CPU; this machine has "), result.output


@pytest.fixture
def checkpoint_of_16px(tmp_path) -> Path:
    from export_study import save_random_checkpoint, trial_config

    return save_random_checkpoint(tmp_path / "m.pt", trial_config(0))


@pytest.mark.parametrize("args,says", [
    (["--scale", "4096"], "--scale: 4096: 8×8 images of 16×16 pixels enlarged 4096× make 274,877,906,944 pixels, more "
                          "than the 89,478,485 of Pillow's decompression-bomb limit; use --scale 73 or less"),
    (["--rows", "64", "--cols", "64", "--scale", "300"], "use --scale 9 or less"),
])
def test_a_grid_too_large_to_open_is_refused_before_sampling(checkpoint_of_16px, tmp_path, monkeypatch, args, says):
    result = invoke(tmp_path, monkeypatch, ["sample", checkpoint_of_16px, "--steps", "1", "--device", "cpu", *args])
    assert result.exit_code == 2 and says in result.output, result.output


def test_a_resumed_study_starts_no_more_workers_than_the_trials_it_still_needs(tmp_path, monkeypatch):
    import archsearch.search.study as study_module
    from archsearch import run_study
    from archsearch.schema.space import space_from_dict
    from test_study import DISTINCT, tiny

    space = space_from_dict(tiny(**DISTINCT))
    run_study(space, tmp_path, trials=1)
    started = []
    monkeypatch.setattr(study_module, "run_workers", lambda *args, **kwargs: started.append(args) or [])
    summary = run_study(space, tmp_path, trials=2, workers=2)  # one trial left: trained here, no worker spawned
    assert started == [] and summary.trials == summary.completed == 2
