"""The import direction of archsearch, checked over every module (DESIGN.md, STYLE.md habit 1).

    errors/io/urls/metrics/load -> schema -> plan -> nn -> data, diffusion, device, settings,
    timing, measure, train, train_state, evaluate, samples -> trial -> search -> results, folder ->
    report, ablation, export, verify, retrain -> cli

A module may import its own layer and the layers before it, never one after: imports inside
functions count as much as those at the top (a lazy import is still a dependency). The package
root only re-exports names, lazily, and is not checked.

`KNOWN_VIOLATIONS` lists the imports that point the wrong way today. The test pins the list
exactly, so a new wrong import fails it, and so does removing one without crossing it off.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "archsearch"

LAYERS = [
    {"errors", "io", "urls", "metrics", "pareto", "load", "extrapolate"},
    {"schema"},
    {"plan"},
    {"nn"},
    {"data", "diffusion", "device", "settings", "timing", "measure", "train", "train_state", "evaluate", "samples"},
    {"quality"},
    {"trial"},
    {"search"},
    {"results", "folder"},
    {"report", "ablation", "export", "verify", "retrain"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# Layers that importing never loads torch into (a report or a validation must stay instant).
TORCH_FREE = ("errors", "io", "urls", "metrics", "pareto", "load", "extrapolate", "schema", "plan", "report")

KNOWN_VIOLATIONS = {
    ("schema.loading", "plan"),  # unet_config_from_dict plans what it loads, for all-at-once errors
}


def top_of(dotted: str) -> str:
    """The layer a module belongs to: `archsearch.search.study` -> `search`."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path, module: str) -> set[str]:
    """Every archsearch module `path` imports, at the top or inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "archsearch"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "archsearch":
                continue
            if target.count(".") == 0:  # `from archsearch import x` / `from . import x`: x is a module
                found |= {f"{target}.{alias.name}" for alias in node.names}
            else:
                found.add(target)
    return found


def violations(root: Path) -> set[tuple[str, str]]:
    """(importing module without the package prefix, imported layer) for every import that
    points from a layer to a later one."""
    out = set()
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("archsearch", *path.relative_to(root).with_suffix("").parts))
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        if module == "archsearch":
            continue  # the package root only re-exports
        here = top_of(module)
        for target in imports_of(path, module):
            there = top_of(target)
            if there and here in RANK and there in RANK and RANK[there] > RANK[here]:
                out.add((module.removeprefix("archsearch."), there))
    return out


def test_every_layer_is_known():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops == set(RANK), f"place these in LAYERS: {tops ^ set(RANK)}"


def test_imports_point_down_the_layers():
    assert violations(PACKAGE) == KNOWN_VIOLATIONS


@pytest.mark.parametrize("source,expected", [
    ("from ..cli import app\n", {("schema.bad", "cli")}),  # relative, upwards
    ("def f():\n    import archsearch.search.study\n", {("schema.bad", "search")}),  # lazy
    ("from archsearch import trial\n", {("schema.bad", "trial")}),  # a module from the package
    ("from . import loading\nfrom ..errors import ConfigError\n", set()),  # own layer and below
])
def test_the_checker_catches_a_wrong_import(tmp_path, source, expected):
    fake = tmp_path / "archsearch"
    (fake / "schema").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "schema" / "__init__.py").write_text("")
    (fake / "schema" / "bad.py").write_text(source)
    assert violations(fake) == expected


def test_torch_free_layers_import_no_torch():
    modules = sorted(
        ".".join(("archsearch", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py") if top_of(".".join(("archsearch", *p.relative_to(PACKAGE).parts))) in TORCH_FREE
    )
    assert len(modules) > 30
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    subprocess.run([sys.executable, "-c", code], check=True)


# Optuna's private attributes and modules, reached only through archsearch.search.storage's
# adapter (StoredTrial) and the journal file it opens.
OPTUNA_PRIVATE_ALLOWED = {"search/storage.py", "search/journal.py"}
_PRIVATE_ATTRS = {"_storage", "_trial_id", "_study_id", "_backend", "_lock", "_file_path", "_cached_frozen_trial"}


def optuna_private_uses(path: Path) -> list[str]:
    """`attribute` or `module` names of Optuna's private parts that `path` uses."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in _PRIVATE_ATTRS and not (
                isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.append(f"line {node.lineno}: .{node.attr}")
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        found += [f"line {node.lineno}: {m}" for m in modules
                  if m.split(".")[0] == "optuna" and any(part.startswith("_") for part in m.split("."))]
    return found


def test_only_the_storage_adapter_touches_optuna_internals():
    offenders = {str(p.relative_to(PACKAGE)): uses for p in sorted(PACKAGE.rglob("*.py"))
                 if str(p.relative_to(PACKAGE)) not in OPTUNA_PRIVATE_ALLOWED and (uses := optuna_private_uses(p))}
    assert offenders == {}
    assert optuna_private_uses(PACKAGE / "search" / "storage.py")  # the checker sees the adapter's own uses


def test_the_private_checker_catches_a_use(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from optuna.storages._rdb import models\ndef f(study, t):\n    return study._storage.get_trial(t._trial_id)\n")
    assert len(optuna_private_uses(bad)) == 3
