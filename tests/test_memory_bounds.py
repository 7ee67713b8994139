"""A study that cannot fit the machine's memory is refused before anything is read or allocated.

`archsearch validate` (and `run`, which checks the same before it writes) estimates what the data
set, the validation inputs and the largest network will hold from image counts and file headers,
and answers in seconds: exit 2, one line naming the field to lower, how much is needed and how
much there is. The available-memory probe is replaced by a fixed amount, so the cases do not
depend on the machine that runs them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import archsearch.load
from archsearch.cli import app
from archsearch.data import estimate_data, load_data
from archsearch.errors import ConfigError, ConfigErrors
from archsearch.load import available_memory
from archsearch.schema.data import data_adapter
from archsearch.schema.space import space_from_dict
from test_bad_inputs import answers_within  # a hang guard, not a speed test

AVAILABLE = 2 << 30
runner = CliRunner()
ARCH = {"levels": [{"width": 16, "blocks": 1}, {"width": 32, "blocks": 1}], "block": {"norm": {"kind": "group",
                                                                                               "groups": 4}}}


@pytest.fixture(autouse=True)
def two_gib(monkeypatch):
    monkeypatch.setattr(archsearch.load, "available_memory", lambda *args: AVAILABLE)




# --------------------------------------------------------------------------- sources, written small

def folder(tmp: Path) -> str:
    (tmp / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (10 * i, 80, 200)).save(tmp / "images" / f"{i}.png")
    return str(tmp / "images")


def npy_header_only(tmp: Path, shape: tuple[int, ...]) -> str:
    """A big .npy whose pixels were never written (a sparse file): only its header can be read cheaply."""
    path = tmp / "big.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()
    return str(path)


def npz(tmp: Path) -> str:
    np.savez(tmp / "a.npz", images=np.zeros((16, 8, 8), np.uint8))
    return str(tmp / "a.npz")


def mnist_headers(tmp: Path) -> str:
    """MNIST's IDX files as far as their headers (60,000 images of 28x28), nothing after."""
    folder = tmp / "root" / "mnist"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte").write_bytes(bytes((0, 0, 8, 3)) + struct.pack(">3I", 60000, 28, 28))
    (folder / "train-labels-idx1-ubyte").write_bytes(bytes((0, 0, 8, 1)) + struct.pack(">I", 60000))
    return str(tmp / "root")


CASES = {  # name: (data section from a temporary folder, eval section, train section, the field named)
    "digits-1000": (lambda t: {"image_size": 1000}, {}, {}, "data.image_size"),
    "digits-4096-rgb": (lambda t: {"image_size": 4096, "channels": 3}, {}, {}, "data.image_size"),
    "digits-600-few-val": (lambda t: {"image_size": 600}, {"num_images": 64}, {}, "data.image_size"),
    "folder-2048": (lambda t: {"source": "folder", "path": folder(t), "image_size": 2048}, {"timesteps_per_image": 4},
                    {}, "data.image_size"),
    "npy-count": (lambda t: {"source": "npy", "path": npy_header_only(t, (2_000_000, 32, 32)), "channels": 1,
                             "image_size": 32}, {}, {}, "data.max_images"),
    "npz-2048": (lambda t: {"source": "npz", "path": npz(t), "channels": 3, "image_size": 2048}, {}, {},
                 "data.image_size"),
    "cifar10-512": (lambda t: {"source": "cifar10", "root": str(t), "download": True, "image_size": 512}, {}, {},
                    "data.image_size"),
    "mnist-256": (lambda t: {"source": "mnist", "root": mnist_headers(t), "image_size": 256}, {}, {},
                  "data.image_size"),
    "fashion-mnist-300": (lambda t: {"source": "fashion-mnist", "root": str(t), "download": True, "image_size": 300},
                          {}, {}, "data.image_size"),
    "synthetic-count": (lambda t: {"source": "synthetic", "num_images": 1_000_000, "image_size": 64}, {}, {},
                        "data.num_images"),
    "validation-images": (lambda t: {"source": "synthetic", "num_images": 40_000, "image_size": 64},
                          {"num_images": 4000, "timesteps": 20, "timesteps_per_image": 20}, {}, "eval.num_images"),
    "train-batch": (lambda t: {"image_size": 64}, {}, {"batch_size": 2**20}, "train.batch_size"),
}


def space_file(tmp: Path, name: str) -> Path:
    data, eval_, train, _ = CASES[name]
    body = {"study": {"name": "memory", "device": "cpu"}, "data": data(tmp), "train": {"steps": 2, **train},
            "eval": {"timesteps": 4, "timesteps_per_image": 2, "buckets": 2, **eval_}, "architecture": ARCH}
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_what_cannot_fit_is_refused_in_seconds_naming_the_field_the_need_and_the_memory(name, command, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = space_file(tmp_path, name)
    before = snapshot(tmp_path)
    args = [command, str(path)] + (["--results-dir", "results"] if command == "run" else [])
    with answers_within(30):
        result = runner.invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    field = CASES[name][3]
    assert lines[0].startswith(f"{field}: needs ~"), lines[0]
    assert "GiB of memory, but this machine has 2.0 GiB available" in lines[0], lines[0]
    assert f"use {field}: " in lines[0] or f"lower {field}" in lines[0], lines[0]
    assert snapshot(tmp_path) == before  # nothing written, nothing downloaded


def test_the_suggested_value_fits_and_the_next_does_not(tmp_path):
    path = space_file(tmp_path, "digits-1000")
    line = runner.invoke(app, ["validate", str(path)]).output.strip()
    size = int(line.split("use data.image_size: ")[1].split()[0])
    even = size - size % 2  # the architecture's one downsample needs an even size
    for value, ok in ((even, True), (even + 2, False)):
        body = yaml.safe_load(path.read_text())
        body["data"]["image_size"] = value
        path.write_text(yaml.safe_dump(body))
        result = runner.invoke(app, ["validate", str(path)])
        assert (result.exit_code == 0) == ok, (value, result.output)


def test_what_fits_is_valid_without_reading_the_data(tmp_path, monkeypatch):
    import archsearch.data

    def no_reading(cfg):
        raise AssertionError("validate read the whole data set")

    monkeypatch.setattr(archsearch.data, "load_data", no_reading)
    path = space_file(tmp_path, "folder-2048")
    body = yaml.safe_load(path.read_text())
    assert body["data"]["source"] == "folder"
    body["data"]["image_size"] = 32
    path.write_text(yaml.safe_dump(body))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_run_still_reads_everything_before_it_writes(tmp_path, monkeypatch):
    """validate checks headers; run reads the values too, and refuses before writing."""
    monkeypatch.chdir(tmp_path)
    array = np.zeros((20, 8, 8), np.float32)
    array[-1, 0, 0] = 5.0  # out of range, in the last image only
    np.save(tmp_path / "a.npy", array)
    body = {"study": {"name": "late", "device": "cpu"}, "train": {"steps": 2},
            "data": {"source": "npy", "path": str(tmp_path / "a.npy"), "channels": 1, "image_size": 8},
            "eval": {"timesteps": 4, "timesteps_per_image": 2, "buckets": 2}, "architecture": ARCH}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(body))
    result = runner.invoke(app, ["run", "space.yaml", "--results-dir", "results"])
    assert result.exit_code == 2 and result.output.startswith("data.path: float images must lie in"), result.output
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- with the space: the network counts

def check(space):
    from archsearch.search.preflight import check_inputs

    check_inputs(space.data, space.eval, space.train, "cpu", spec=space)


def refusal(space) -> str:
    with pytest.raises(ConfigErrors) as caught:
        check(space)
    assert len(caught.value.errors) == 1
    return str(caught.value.errors[0])


def space(**sections):
    body = {"study": {"name": "s", "device": "cpu"}, "data": {"image_size": 64}, "train": {"steps": 2},
            "eval": {"timesteps": 4, "timesteps_per_image": 2, "buckets": 2}, "architecture": ARCH}
    for key, value in sections.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) and key != "architecture" else value
    return space_from_dict(body)


@pytest.mark.parametrize("sections,field", [
    ({"train": {"batch_size": 4096}}, "train.batch_size"),
    ({"train": {"batch_size": {"choice": [8, 4096]}}}, "train.batch_size"),  # the largest a search may draw
    ({"measure": {"batch_size": 8192}}, "measure.batch_size"),
    ({"eval": {"batch_size": 65536, "num_images": 4096, "timesteps": 20, "timesteps_per_image": 20},
      "data": {"source": "synthetic", "num_images": 50_000, "image_size": 16}}, "eval.batch_size"),
    ({"data": {"image_size": 512}}, "data.image_size"),
    ({"architecture": {"levels": [{"width": 8192, "blocks": 2}, {"width": 8192, "blocks": 2}]},
      "data": {"image_size": 8}}, "architecture"),
])
def test_the_network_and_its_batches_count_with_the_space(sections, field):
    line = refusal(space(**sections))
    assert line.startswith(f"{field}: needs ~") and "2.0 GiB available" in line, line


def test_a_search_is_refused_only_when_even_its_smallest_network_cannot_fit():
    searched = {"levels": [{"width": {"choice": [8, 16, 768]}, "blocks": 1}, {"width": 32, "blocks": 1}],
                "block": {"norm": {"kind": "group", "groups": 4}}}
    check(space(architecture=searched))  # width 768 will not fit: its trials are `oom`, the others run
    huge = {**searched, "levels": [{"width": {"choice": [512, 768]}, "blocks": 1}, {"width": 32, "blocks": 1}]}
    line = refusal(space(architecture=huge))
    assert "through the smallest sampled network" in line, line


def test_an_ablation_counts_its_largest_variant():
    from archsearch.schema.ablation import ablation_from_dict

    spec = ablation_from_dict({"study": {"name": "a", "device": "cpu"}, "data": {"image_size": 64},
                               "train": {"steps": 2, "batch_size": 512}, "eval": {"timesteps": 4, "buckets": 2,
                                                                                   "timesteps_per_image": 2},
                               "base": ARCH, "variants": {"wide": {"levels": [{"width": 512, "blocks": 1},
                                                                             {"width": 512, "blocks": 1}]}},
                               "seeds": 1})
    from archsearch.search.preflight import check_inputs

    with pytest.raises(ConfigErrors, match="variant wide") as caught:
        check_inputs(spec.data, spec.eval, spec.train.model_dump(), "cpu", spec=spec)
    assert str(caught.value).startswith("train.batch_size: ")


def test_on_cuda_the_gpu_memory_is_what_the_network_is_checked_against():
    import torch

    from archsearch.search.memory import check_memory

    s = space(train={"batch_size": 1024})
    estimate = estimate_data(s.data)
    check_memory(estimate, s.data, s.eval, s.train, torch.device("cpu"), s, available={"host": 1 << 40})
    with pytest.raises(ConfigError) as caught:
        check_memory(estimate, s.data, s.eval, s.train, torch.device("cuda", 0), s,
                     available={"host": 1 << 40, "device": 2 << 30})
    assert caught.value.path == "train.batch_size"
    assert "but cuda:0 has 2.0 GiB in all" in caught.value.message


# --------------------------------------------------------------------------- the estimate and the probe

def test_the_estimate_counts_what_loading_holds(tmp_path):
    """For each source: the images and bytes the estimate counts are those the loaded data keeps."""
    np.save(tmp_path / "a.npy", np.zeros((9, 10, 10), np.float32))
    np.savez(tmp_path / "a.npz", images=np.zeros((10, 12, 12, 3), np.uint8))
    configs = [{"source": "digits", "image_size": 24}, {"source": "synthetic", "num_images": 30, "channels": 3},
               {"source": "folder", "path": folder(tmp_path), "image_size": 20},
               {"source": "npy", "path": str(tmp_path / "a.npy"), "channels": 1, "max_images": 5},
               {"source": "npz", "path": str(tmp_path / "a.npz"), "channels": 1}]
    for raw in configs:
        cfg = data_adapter.validate_python(raw)
        estimate, data = estimate_data(cfg), load_data(cfg)
        assert estimate.images == len(data.train_uint8) + len(data.val_uint8), raw
        assert estimate.held_bytes == data.train_uint8.nbytes + data.val_uint8.nbytes, raw
        assert data.train_uint8.dtype.itemsize == 1  # kept as 8-bit pixels: floats are made when asked for


def test_the_estimate_reads_headers_not_pixels(tmp_path):
    """A 2 GB array whose pixels were never written, a folder of one good and many broken files."""
    cfg = data_adapter.validate_python({"source": "npy", "path": npy_header_only(tmp_path, (2_000_000, 32, 32)),
                                        "channels": 1, "image_size": 32})
    with answers_within(5):
        assert estimate_data(cfg).images == 2_000_000
    (tmp_path / "f").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "f" / "a.png")
    for i in range(50):
        (tmp_path / "f" / f"b{i}.png").write_bytes(b"broken")
    assert estimate_data(data_adapter.validate_python({"source": "folder", "path": str(tmp_path / "f")})).images == 51


@pytest.mark.parametrize("raw,field,message", [
    ({"source": "npy", "path": "missing.npy", "channels": 1}, "data.path", "does not exist"),
    ({"source": "mnist", "root": "nowhere"}, "data.root", "MNIST not found"),
    ({"source": "cifar10", "root": "nowhere"}, "data.root", "CIFAR-10 not found"),
])
def test_the_estimate_refuses_what_reading_would(tmp_path, monkeypatch, raw, field, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        estimate_data(data_adapter.validate_python(raw))
    assert caught.value.path == field


def test_available_memory_reads_memavailable(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683772 kB\nMemFree:         1000000 kB\nMemAvailable:   23501104 kB\n")
    assert available_memory(str(meminfo)) == 23501104 * 1024
    assert available_memory(str(tmp_path / "none")) is None or available_memory(str(tmp_path / "none")) > 0
