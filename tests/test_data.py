"""The data layer: every source, its conversions, the fixed validation split, the device batches.

Each file format gets a tiny fake written in its real byte layout (PNG/JPEG, CIFAR pickles, IDX,
npz/npy), so the readers are tested offline, and downloads go to `file://` URLs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archsearch.data import DeviceBatches, DownloadError, ImageData, load_data, split_indices
from archsearch.data import standard
from archsearch.data.convert import to_signed, to_uint8_images, to_unsigned
from archsearch.errors import ConfigError
from archsearch.schema.data import DATA_SOURCES, DEFAULT_DATA, Digits, Synthetic, data_adapter

# --------------------------------------------------------------------------- fakes in real formats


def _idx(array: np.ndarray) -> bytes:
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_arrays(n: int = 12, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[0, :14] = 255  # top half white: survives resizing as a recognisable picture
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_mnist(folder: Path, gz: bool, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = _mnist_arrays(n)
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = _idx(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return images, labels


def _cifar_batch(batch: int, n: int = 4) -> dict:
    rng = np.random.default_rng(batch)
    data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    if batch == 1:
        data[0] = 0
        data[0, :1024] = 255  # first image pure red: rows are R plane, G plane, B plane
    return {b"batch_label": b"training batch", b"labels": [(batch + i) % 10 for i in range(n)], b"data": data}


def write_cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(_cifar_batch(b), protocol=2))


def cifar_tarball(path: Path) -> str:
    """The official archive's layout, in miniature; returns its md5."""
    with tarfile.open(path, "w:gz") as tar:
        for b in range(1, 6):
            payload = pickle.dumps(_cifar_batch(b), protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/data_batch_{b}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_folder(root: Path) -> None:
    """Two classes in sub-folders (one nested deeper), PNG and JPEG, a corrupt file, a text file."""
    (root / "cats" / "deep").mkdir(parents=True)
    (root / "dogs").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(root / "cats" / "a.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "cats" / "deep" / "b.JPG", quality=100)
    Image.new("L", (30, 30), 200).save(root / "dogs" / "c.jpeg")
    Image.new("RGBA", (24, 24), (0, 255, 0, 128)).save(root / "dogs" / "d.png")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (root / "dogs" / "notes.txt").write_text("not an image")


@pytest.fixture
def configs(tmp_path: Path) -> dict[str, dict]:
    """One valid config (as YAML would give it) per source, over fakes in tmp_path."""
    write_folder(tmp_path / "images")
    write_cifar(tmp_path / "root")
    write_mnist(tmp_path / "root" / "mnist", gz=True)
    write_mnist(tmp_path / "root" / "fashion-mnist", gz=False)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", images=rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8), y=np.arange(10) % 3)
    np.save(tmp_path / "a.npy", rng.uniform(-1, 1, (9, 10, 10)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(9) % 2)
    root = str(tmp_path / "root")
    return {
        "digits": {"source": "digits"},
        "folder": {"source": "folder", "path": str(tmp_path / "images"), "labels": True},
        "cifar10": {"source": "cifar10", "root": root},
        "mnist": {"source": "mnist", "root": root},
        "fashion-mnist": {"source": "fashion-mnist", "root": root},
        "npz": {"source": "npz", "path": str(tmp_path / "a.npz"), "labels_key": "y", "channels": 3},
        "npy": {
            "source": "npy", "path": str(tmp_path / "a.npy"), "labels_path": str(tmp_path / "y.npy"), "channels": 1
        },
        "synthetic": {"source": "synthetic", "num_images": 20},
    }


def _load(raw: dict, **overrides) -> ImageData:
    return load_data(data_adapter.validate_python({**raw, **overrides}))


def _on_8bit_grid(x: torch.Tensor) -> bool:
    return torch.equal(to_signed(to_unsigned(x)), x)


# --------------------------------------------------------------------------- schema


def test_schema_defaults_and_discriminator():
    assert isinstance(DEFAULT_DATA, Digits) and DEFAULT_DATA.image_size == 16 and DEFAULT_DATA.channels == 1
    expected_channels = {"digits": 1, "mnist": 1, "fashion-mnist": 1, "synthetic": 1, "cifar10": 3, "folder": 3}
    for source, channels in expected_channels.items():
        extra = {"path": "x"} if source == "folder" else {}
        assert data_adapter.validate_python({"source": source, **extra}).channels == channels
    cfg = data_adapter.validate_python({"source": "mnist", "root": "~/datasets"})
    assert cfg.root == str(Path.home() / "datasets") and cfg.download is False
    with pytest.raises(Exception, match="channels"):  # arrays must say what they hold
        data_adapter.validate_python({"source": "npz", "path": "a.npz"})
    with pytest.raises(Exception, match="unknown source"):
        data_adapter.validate_python({"source": "imagenet"})
    assert data_adapter.validate_python({"image_size": 32}) == Digits(image_size=32)  # source left out
    with pytest.raises(Exception, match="extra|not permitted"):
        data_adapter.validate_python({"source": "digits", "path": "x"})  # digits has no path


@pytest.mark.parametrize("source", DATA_SOURCES)
def test_every_source_gives_split_images_in_range(configs, source):
    data = _load(configs[source], image_size=8)
    c = data_adapter.validate_python(configs[source]).channels
    for images in (data.train, data.val):
        assert images.dtype == torch.float32 and images.device.type == "cpu"
        assert images.shape[1:] == (c, 8, 8)
        assert images.min() >= -1 and images.max() <= 1
        assert _on_8bit_grid(images)
    assert len(data.val) >= 1 and len(data.train) >= 1
    assert data.train_labels is not None and data.train_labels.dtype == torch.int64
    assert len(data.train_labels) == len(data.train) and len(data.val_labels) == len(data.val)
    assert 0 <= int(data.train_labels.min()) and int(data.train_labels.max()) < data.num_classes


def test_digits_real_and_fast_enough_for_the_quickstart():
    data = load_data()
    assert len(data.train) + len(data.val) == 1797 and len(data.val) == 180
    assert data.train.shape[1:] == (1, 16, 16) and data.num_classes == 10
    assert data.train.min() == -1 and data.train.max() == 1  # full range used
    counts = torch.bincount(torch.cat([data.train_labels, data.val_labels]), minlength=10)
    assert counts.sum() == 1797 and counts.min() >= 170  # ~180 per digit: the real data set


def test_max_images_keeps_the_first_images_before_the_split():
    def full(data: ImageData, n: int, cfg) -> torch.Tensor:
        out = torch.empty(n, *data.train.shape[1:])
        train_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.split_seed)
        out[train_idx], out[val_idx] = data.train, data.val
        return out

    small_cfg = Digits(max_images=50)
    small = load_data(small_cfg)
    assert len(small.train) + len(small.val) == 50 and len(small.val) == 5
    everything = full(load_data(), 1797, DEFAULT_DATA)
    assert torch.equal(full(small, 50, small_cfg), everything[:50])


def test_labels_false_drops_labels(configs):
    data = _load(configs["cifar10"], labels=False)
    assert data.train_labels is None and data.val_labels is None and data.num_classes is None
    assert next(data.loader("cpu", 4))[1] is None


# --------------------------------------------------------------------------- split


def test_split_depends_on_split_seed_only():
    a_train, a_val = split_indices(1000, 0.1, split_seed=3)
    torch.manual_seed(12345)  # the global RNG, as a training run would set it
    b_train, b_val = split_indices(1000, 0.1, split_seed=3)
    assert torch.equal(a_train, b_train) and torch.equal(a_val, b_val)
    assert len(a_val) == 100 and len(a_train) == 900
    assert torch.equal(torch.cat([a_train, a_val]).sort().values, torch.arange(1000))
    assert not torch.equal(split_indices(1000, 0.1, split_seed=4)[1], a_val)


@pytest.mark.parametrize(
    ("n", "fraction", "num_val"), [(2, 0.1, 1), (10, 0.01, 1), (10, 0.99, 9), (100, 0.07, 7), (101, 0.1, 11)]
)
def test_split_sizes(n, fraction, num_val):
    assert len(split_indices(n, fraction, 0)[1]) == num_val


def test_synthetic_split_ignores_the_drawing_seed():
    a = load_data(Synthetic(num_images=40, seed=1, split_seed=7))
    b = load_data(Synthetic(num_images=40, seed=2, split_seed=7))
    # the drawing seed changes the pictures, not which images are held out (labels follow pictures)
    assert not torch.equal(a.train, b.train)
    again = load_data(Synthetic(num_images=40, seed=1, split_seed=7))
    assert torch.equal(a.val, again.val) and torch.equal(a.val_labels, again.val_labels)


def test_synthetic_is_deterministic_and_labelled_by_shape():
    cfg = Synthetic(num_images=30, image_size=12, channels=3, seed=5)
    a, b = load_data(cfg), load_data(cfg)
    assert torch.equal(a.train, b.train) and a.class_names == ("circle", "square", "stripes")
    assert set(torch.cat([a.train_labels, a.val_labels]).tolist()) == {0, 1, 2}
    capped = load_data(Synthetic(num_images=30, image_size=12, channels=3, seed=5, max_images=10, val_fraction=0.5))
    everything = torch.empty(30, 3, 12, 12)
    tr, va = split_indices(30, cfg.val_fraction, 0)
    everything[tr], everything[va] = a.train, a.val
    first = torch.empty(10, 3, 12, 12)
    tr, va = split_indices(10, 0.5, 0)
    first[tr], first[va] = capped.train, capped.val
    assert torch.equal(first, everything[:10])  # a cap does not redraw the shapes


# --------------------------------------------------------------------------- folder


def test_folder_recursive_with_skips_labels_and_crop(configs):
    data = _load(configs["folder"], val_fraction=0.2)
    assert data.skipped and data.skipped[0][0] == "dogs/broken.png"  # reported by name, not fatal
    assert data.class_names == ("cats", "dogs") and data.num_classes == 2
    assert len(data.train) + len(data.val) == 4  # a.png, deep/b.JPG, c.jpeg, d.png; not notes.txt
    assert "1 unreadable file skipped" in data.summary()


def test_folder_gray_and_rgb_conversion(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red2.png")
    rgb = _load({"source": "folder", "path": str(tmp_path)}, image_size=4)
    assert torch.equal(rgb.train[0], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1).expand(3, 4, 4))
    gray = _load({"source": "folder", "path": str(tmp_path), "channels": 1}, image_size=4)
    assert torch.allclose(gray.train, torch.full((1, 1, 4, 4), 76 / 127.5 - 1))  # Pillow's L: 0.299 * 255


def test_folder_says_what_it_found_how_it_split_and_converted(tmp_path):
    for i in range(3):
        Image.new("RGBA", (8, 8), (9, 9, 9, 128)).save(tmp_path / f"a{i}.png")
    for i in range(2):
        Image.new("L", (8, 8), 7).save(tmp_path / f"g{i}.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "c.png")
    (tmp_path / "z.png").write_bytes(b"not a png")
    lines = _load({"source": "folder", "path": str(tmp_path)}, image_size=4, val_fraction=0.3).describe()
    assert lines[0] == f"folder:{tmp_path}: 4 train + 2 val images, 3x4x4, 1 unreadable file skipped"
    assert lines[1:4] == [f"7 image files under {tmp_path}, 6 read", "3 RGBA images converted to RGB (alpha dropped)",
                          "2 grayscale images expanded to RGB"]
    assert lines[4].startswith("skipped z.png: ") and len(lines) == 5
    gray = _load({"source": "folder", "path": str(tmp_path), "channels": 1, "max_images": 4}, image_size=4).describe()
    assert gray[1:4] == [f"7 image files under {tmp_path}, 4 read (max_images: 4)",  # a0-a2 and c, in sorted order
                        "3 RGBA images converted to grayscale (alpha dropped)", "1 RGB image converted to grayscale"]


def test_folder_center_crop(tmp_path):
    for name in ("a.png", "b.png"):
        img = Image.new("L", (30, 10), 0)
        img.paste(255, (10, 0, 20, 10))  # only the central 10x10 square is white
        img.save(tmp_path / name)
    data = _load({"source": "folder", "path": str(tmp_path), "channels": 1}, image_size=5)
    assert torch.equal(data.train, torch.ones(1, 1, 5, 5))


def test_folder_many_files_decoded_in_parallel_keep_their_order(tmp_path):
    for i in range(70):  # more than one worker's worth
        Image.new("L", (6, 6), 3 * i).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "002.png").write_bytes(b"broken")
    data = _load({"source": "folder", "path": str(tmp_path), "channels": 1}, image_size=3)
    pixels = torch.cat([data.train_uint8, to_unsigned(data.val)])[:, 0, 0, 0].sort().values
    assert pixels.tolist() == [3 * i for i in range(70) if i != 2] and data.skipped[0][0] == "002.png"
    capped = _load({"source": "folder", "path": str(tmp_path), "channels": 1}, image_size=3, max_images=4)
    assert sorted(torch.cat([capped.train_uint8, to_unsigned(capped.val)])[:, 0, 0, 0].tolist()) == [0, 3, 9, 12]


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as err:
        _load({"source": "folder", "path": str(tmp_path / "nope")})
    assert err.value.path == "data.path"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no .png/.jpg/.jpeg files"):
        _load({"source": "folder", "path": str(tmp_path / "empty")})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="none of the 1 image files .* x.jpg") as err:
        _load({"source": "folder", "path": str(tmp_path / "bad")})
    assert err.value.path == "data.path"
    Image.new("L", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(ConfigError, match="no class") as err:
        _load({"source": "folder", "path": str(tmp_path), "labels": True})
    assert err.value.path == "data.labels"


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar10_reads_the_pickle_batches(configs):
    data = _load(configs["cifar10"], image_size=32, val_fraction=0.05)
    assert len(data.train) + len(data.val) == 20 and data.class_names[0] == "airplane"
    first = data.train[0] if 0 not in split_indices(20, 0.05, 0)[1] else data.val[0]
    assert torch.equal(first[0], torch.ones(32, 32)) and torch.equal(first[1:], -torch.ones(2, 32, 32))
    labels = torch.cat([data.train_labels, data.val_labels]).sort().values
    expected = sorted((b + i) % 10 for b in range(1, 6) for i in range(4))
    assert labels.tolist() == expected
    gray = _load(configs["cifar10"], image_size=32, channels=1, max_images=6)
    assert gray.train.shape[1] == 1 and len(gray.train) + len(gray.val) == 6


def test_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(ConfigError, match="download: true") as err:
        _load({"source": "cifar10", "root": str(tmp_path)})
    assert err.value.path == "data.root" and str(tmp_path) in err.value.message


def test_cifar10_rejects_non_data_pickles(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ConfigError, match="data_batch_3 is not a CIFAR-10 python batch"):
        _load({"source": "cifar10", "root": str(tmp_path)})


def test_cifar10_tarball_in_root_is_extracted(tmp_path):
    cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    data = _load({"source": "cifar10", "root": str(tmp_path)})
    assert len(data.train) + len(data.val) == 20
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    served = tmp_path / "served.tar.gz"
    md5 = cifar_tarball(served)
    root = tmp_path / "root"
    bad = standard.Resource("cifar-10-python.tar.gz", (served.as_uri(),), "0" * 32)
    monkeypatch.setitem(standard.RESOURCES, "cifar10", (bad,))
    with pytest.raises(DownloadError, match="checksum mismatch"):
        _load({"source": "cifar10", "root": str(root), "download": True})
    assert not any(root.rglob("*.tar.gz*"))  # the bad file was deleted

    good = standard.Resource("cifar-10-python.tar.gz", ((tmp_path / "missing-mirror").as_uri(), served.as_uri()), md5)
    monkeypatch.setitem(standard.RESOURCES, "cifar10", (good,))
    data = _load({"source": "cifar10", "root": str(root), "download": True})
    assert len(data.train) + len(data.val) == 20  # the second mirror delivered


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    ("source", "folder"), [("mnist", "mnist"), ("fashion-mnist", "fashion-mnist"), ("mnist", "MNIST/raw")]
)
def test_mnist_idx_files(tmp_path, gz, source, folder):
    images, labels = write_mnist(tmp_path / folder, gz=gz)
    data = _load({"source": source, "root": str(tmp_path)}, image_size=28, val_fraction=0.25)
    train_idx, val_idx = split_indices(12, 0.25, 0)
    assert torch.equal(data.train, to_signed(torch.from_numpy(images[train_idx.numpy()])[:, None]))
    assert torch.equal(data.val_labels, torch.from_numpy(labels[val_idx.numpy()]).long())
    small = _load({"source": source, "root": str(tmp_path)}, image_size=14)  # resized, still sensible
    first = small.train[0] if 0 in train_idx else small.val[0]
    assert torch.equal(first[0, :6], torch.ones(6, 14)) and torch.equal(first[0, 8:], -torch.ones(6, 14))


def test_mnist_errors(tmp_path):
    with pytest.raises(ConfigError, match="MNIST not found .* download: true") as err:
        _load({"source": "mnist", "root": str(tmp_path)})
    assert err.value.path == "data.root"
    write_mnist(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(ConfigError, match="not an IDX file of uint8"):
        _load({"source": "mnist", "root": str(tmp_path)})


def test_mnist_download_from_file_url(tmp_path, monkeypatch):
    served = tmp_path / "served"
    write_mnist(served, gz=True)
    table = tuple(
        standard.Resource(name, ((served / name).as_uri(),), hashlib.md5((served / name).read_bytes()).hexdigest())
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    )
    monkeypatch.setitem(standard.RESOURCES, "fashion-mnist", table)
    data = _load({"source": "fashion-mnist", "root": str(tmp_path / "root"), "download": True})
    assert len(data.train) + len(data.val) == 12 and data.class_names[-1] == "Ankle boot"
    assert (tmp_path / "root" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()


# --------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((2, 4, 4), 255, np.uint8), 1.0),                      # (N, H, W) uint8
        (np.full((2, 4, 4, 1), 0.5, np.float32), 0.0),                 # (N, H, W, C) in [0, 1]
        (np.full((2, 1, 4, 4), -1.0), -1.0),                           # (N, C, H, W) in [-1, 1]
        (np.full((2, 4, 4, 3), -0.5), -0.5),                           # RGB (N, H, W, C) -> gray
        (np.full((2, 4, 4), 51, np.int16), 51 / 127.5 - 1),           # other integers: 0..255
    ],
)
def test_array_layouts_and_ranges(array, expected):
    images = to_signed(to_uint8_images(array, channels=1, size=4, path="data.key"))
    assert images.shape == (len(array), 1, 4, 4)
    assert torch.allclose(images, torch.full_like(images, expected), atol=1 / 127.5)  # one 8-bit level


def test_channel_conversions_match_pillow():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    gray = to_uint8_images(rgb, channels=1, size=6, path="p")[:, 0].numpy()
    pillow = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])
    assert np.abs(gray.astype(int) - pillow).max() <= 1
    repeated = to_uint8_images(rgb[..., 0], channels=3, size=6, path="p")
    assert torch.equal(repeated[:, 0], repeated[:, 2]) and np.array_equal(repeated[:, 0].numpy(), rgb[..., 0])
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)
    assert torch.equal(to_uint8_images(rgba, channels=3, size=6, path="p"), torch.from_numpy(rgb).permute(0, 3, 1, 2))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 4, 4), 3.0), r"\[0, 1\] or \[-1, 1\]"),
        (np.full((2, 4, 4), -2.0), r"must lie in \[-1, 1\]"),
        (np.full((2, 4, 4), 300, np.int32), r"\[0, 255\]"),
        (np.zeros((2, 5, 7, 9)), "channel axis"),
        (np.zeros((2, 4)), "got shape"),
        (np.full((2, 4, 4), np.nan), "NaN"),
    ],
)
def test_array_errors_name_the_field(array, message):
    with pytest.raises(ConfigError, match=message) as err:
        to_uint8_images(array, channels=1, size=4, path="data.key")
    assert err.value.path == "data.key"


def test_npz_and_npy_errors(tmp_path, configs):
    with pytest.raises(ConfigError, match=r"no array 'pixels'.*\['images', 'y'\]") as err:
        _load(configs["npz"], key="pixels")
    assert err.value.path == "data.key"
    with pytest.raises(ConfigError) as err:
        _load(configs["npz"], labels_key="nope")
    assert err.value.path == "data.labels_key"
    with pytest.raises(ConfigError, match="does not exist") as err:
        _load(configs["npy"], path=str(tmp_path / "missing.npy"))
    assert err.value.path == "data.path"
    np.save(tmp_path / "short.npy", np.arange(3))
    with pytest.raises(ConfigError, match="3 labels for 9 images") as err:
        _load(configs["npy"], labels_path=str(tmp_path / "short.npy"))
    assert err.value.path == "data.labels_path"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot read") as err:
        _load(configs["npz"], path=str(tmp_path / "junk.npz"))
    assert err.value.path == "data.path"


def test_npz_values_survive(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (6, 3, 5, 5), dtype=np.uint8)  # (N, C, H, W)
    np.savez(tmp_path / "x.npz", images=images)
    data = _load({"source": "npz", "path": str(tmp_path / "x.npz"), "channels": 3}, image_size=5, val_fraction=0.5)
    tr, _ = split_indices(6, 0.5, 0)
    assert torch.equal(data.train_uint8, torch.from_numpy(images[tr.numpy()]))
    assert data.train_labels is None and data.name.startswith("npz:")


# --------------------------------------------------------------------------- device batches


def _indexed(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return images, torch.arange(n)


def test_batches_sample_epochs_without_replacement():
    images, labels = _indexed(10)
    batches = DeviceBatches(images, labels, "cpu", batch_size=4, seed=0)
    seen = torch.cat([next(batches)[1] for _ in range(5)])  # 20 draws = two epochs exactly
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])  # reshuffled
    assert batches.epoch == 2 and batches.steps_per_epoch == 3


def test_batches_match_their_labels_and_the_training_set():
    data = load_data(Synthetic(num_images=50, channels=3))
    images, labels = next(data.loader("cpu", batch_size=64, seed=1))  # larger than the set: spans epochs
    assert images.shape == (64, 3, 16, 16) and images.dtype == torch.float32
    for x, y in zip(images[:5], labels[:5]):
        assert any(torch.equal(x, t) and y == ty for t, ty in zip(data.train, data.train_labels))


@pytest.mark.parametrize("resident_bytes", [1 << 30, 0])
def test_batches_deterministic_and_same_on_both_paths(resident_bytes):
    images, labels = _indexed(13)
    def run(seed, budget=resident_bytes):
        batches = DeviceBatches(images, labels, "cpu", batch_size=5, seed=seed, max_resident_bytes=budget)
        assert batches.resident == (budget > 0)
        return [next(batches) for _ in range(7)]

    a = run(seed=3)
    torch.manual_seed(999)  # the global RNG must not matter
    b = run(seed=3)
    resident = run(seed=3, budget=1 << 30)
    for (xa, ya), (xb, yb), (xr, yr) in zip(a, b, resident):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa, xr) and torch.equal(ya, yr)
        assert torch.equal(xa[:, 0, 0, 0], to_signed(ya.to(torch.uint8)))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, run(seed=4)))


def test_batches_reject_bad_input():
    images, labels = _indexed(4)
    with pytest.raises(ValueError, match="uint8"):
        DeviceBatches(images.float(), labels, "cpu", 2)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceBatches(images, labels, "cpu", 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("resident_bytes", [1 << 30, 0])
def test_batches_on_cuda_follow_the_cpu_sequence(resident_bytes):
    images, labels = _indexed(13)
    cpu = DeviceBatches(images, labels, "cpu", batch_size=5, seed=2)
    cuda = DeviceBatches(images, labels, "cuda", batch_size=5, seed=2, max_resident_bytes=resident_bytes)
    assert cuda.resident == (resident_bytes > 0)
    for _ in range(7):
        (x, y), (xc, yc) = next(cpu), next(cuda)
        assert xc.device.type == "cuda" and yc.device.type == "cuda"
        assert torch.equal(x, xc.cpu()) and torch.equal(y, yc.cpu())
