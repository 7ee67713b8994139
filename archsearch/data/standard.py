"""CIFAR-10, MNIST and Fashion-MNIST from their standard on-disk formats, downloaded on request.

No torchvision: the formats are small enough to read directly.

    cifar10        root/cifar-10-batches-py/data_batch_1..5 (python pickles of 10,000 x 3072 uint8
                   rows); the official tarball in root is extracted when present. Only the five
                   training batches are read; test_batch stays untouched for a final test.
    mnist          root/mnist/train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] (IDX:
                   big-endian header, then uint8 pixels). torchvision's root/MNIST/raw is read
                   too, so an existing torchvision cache is reused. Only the training split.
    fashion-mnist  the same files under root/fashion-mnist (or root/FashionMNIST/raw).

Nothing is fetched unless the config says `download: true`; then the official files are
downloaded with urllib, checked against their published MD5 (a mismatch deletes the file) and
kept under root. `RESOURCES` holds the URLs and checksums (tests point it at local fakes).
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archsearch.errors import ConfigError
from archsearch.io import write_failure
from archsearch.schema.data import Cifar10, FashionMnist, Mnist

from .convert import to_uint8_images
from .sources import Raw

__all__ = ["DownloadError", "RESOURCES", "Resource", "fetch", "read_cifar10", "read_mnist", "cifar10_count",
           "mnist_count", "CIFAR10_COUNT", "MNIST_COUNT"]

CIFAR10_COUNT = 50_000  # training images of CIFAR-10 (five batches of 10,000)
MNIST_COUNT = 60_000    # training images of MNIST and Fashion-MNIST


class DownloadError(RuntimeError):
    """A requested download failed or did not match its checksum."""


@dataclass(frozen=True)
class Resource:
    """One official file: its name on disk, its mirrors (tried in order) and its MD5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def _mirrored(mirrors: tuple[str, ...], filename: str, md5: str) -> Resource:
    return Resource(filename, tuple(m + filename for m in mirrors), md5)


# Checksums as published by the datasets' authors (and used by torchvision).
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "cifar10": (
        Resource(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            "c58f30108f718f92721af3b95e74349a",
        ),
    ),
    "mnist": (
        _mirrored(_MNIST_MIRRORS, "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _mirrored(_MNIST_MIRRORS, "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ),
    "fashion-mnist": (
        _mirrored(_FASHION_MIRRORS, "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        _mirrored(_FASHION_MIRRORS, "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    ),
}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch(resource: Resource, folder: Path) -> Path:
    """Download `resource` into `folder`, verify its MD5 and return its path.

    Each mirror is tried in turn; a file whose checksum does not match is deleted. Raises
    DownloadError, saying where to put the file by hand, when no mirror delivers a good copy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / resource.filename
    part = dest.with_name(dest.name + ".part")
    problems = []
    for url in resource.urls:
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts; ValueError: bad URL
            part.unlink(missing_ok=True)
            failure = write_failure(exc, part)
            if failure is not None:  # a full disk: another mirror would fill it too
                raise failure from None
            problems.append(f"{url}: {exc}")
            continue
        if digest.hexdigest() != resource.md5:
            part.unlink(missing_ok=True)
            problems.append(f"{url}: checksum mismatch (md5 {digest.hexdigest()}, expected {resource.md5}); deleted")
            continue
        part.replace(dest)
        return dest
    raise DownloadError(
        f"could not download {resource.filename}: " + "; ".join(problems)
        + f". Retry later, or put a copy with md5 {resource.md5} at {dest}"
    )


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def read_cifar10(cfg: Cifar10) -> Raw:
    """The 50,000 training images of CIFAR-10 (python version)."""
    root = Path(cfg.root)
    folder = root / _CIFAR_DIR
    if not all((folder / b).is_file() for b in _CIFAR_BATCHES):
        archive = root / RESOURCES["cifar10"][0].filename
        if not archive.is_file():
            if not cfg.download:
                raise _missing("CIFAR-10", root, f"{folder}/data_batch_1..5 (or the tarball {archive.name} in {root})")
            archive = fetch(RESOURCES["cifar10"][0], root)
        _extract(archive, root)
    missing = [b for b in _CIFAR_BATCHES if not (folder / b).is_file()]
    if missing:
        raise ConfigError("data.root", f"{folder} lacks {', '.join(missing)}; the CIFAR-10 files are incomplete")

    images, labels = [], []
    for name in _CIFAR_BATCHES:
        batch = _load_cifar_batch(folder / name)
        images.append(batch[0])
        labels.append(batch[1])
        if cfg.max_images is not None and sum(map(len, images)) >= cfg.max_images:
            break  # the cap keeps the first images: no need to unpickle the later batches
    n = sum(map(len, images)) if cfg.max_images is None else min(cfg.max_images, sum(map(len, images)))
    pixels = np.concatenate(images)[:n]
    out = to_uint8_images(pixels, channels=cfg.channels, size=cfg.image_size, path="data.root")
    if not cfg.labels:
        return Raw(out)
    return Raw(out, np.concatenate(labels)[:n], CIFAR10_CLASSES)


def cifar10_count(cfg: Cifar10) -> int:
    """The training images `read_cifar10` would read, found without reading them (nor
    downloading or extracting anything); the same error when they are missing."""
    root = Path(cfg.root)
    folder = root / _CIFAR_DIR
    archive = root / RESOURCES["cifar10"][0].filename
    if not all((folder / b).is_file() for b in _CIFAR_BATCHES) and not archive.is_file() and not cfg.download:
        raise _missing("CIFAR-10", root, f"{folder}/data_batch_1..5 (or the tarball {archive.name} in {root})")
    return CIFAR10_COUNT


def _extract(archive: Path, root: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(_CIFAR_DIR + "/") and m.isfile()]
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse links and absolute paths
                tar.extractall(root, members=members, filter="data")
            else:
                tar.extractall(root, members=members)
    except (tarfile.TarError, OSError) as exc:
        failure = write_failure(exc, root / _CIFAR_DIR / "file")  # a full disk is not a bad archive
        if failure is not None:
            raise failure from None
        raise ConfigError("data.root", f"cannot extract {archive}: {exc}; delete it and download again") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a batch file cannot run code on load."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} images")
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError("data.root", f"{path} is not a CIFAR-10 python batch ({exc})") from None
    return data, labels


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST

_IDX_NAMES = {"images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
              "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")}
_MNIST_DIRS = {"mnist": ("mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw")}


def read_mnist(cfg: Mnist | FashionMnist) -> Raw:
    """The 60,000 training images of MNIST or Fashion-MNIST."""
    root = Path(cfg.root)
    title = "MNIST" if cfg.source == "mnist" else "Fashion-MNIST"
    found = _find_idx(root, cfg.source)
    if found is None:
        folder = root / _MNIST_DIRS[cfg.source][0]
        if not cfg.download:
            raise _missing(title, root, f"{folder}/train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
        for resource in RESOURCES[cfg.source]:
            fetch(resource, folder)
        found = _find_idx(root, cfg.source)
        if found is None:  # a resource table that names other files than the reader looks for
            raise DownloadError(f"downloaded {title} into {folder} but its training files are not there")
    images = _read_idx(found[0], ndim=3)
    labels = _read_idx(found[1], ndim=1)
    if len(labels) != len(images):
        raise ConfigError("data.root", f"{found[1]} has {len(labels)} labels for {len(images)} images in {found[0]}")
    n = len(images) if cfg.max_images is None else min(cfg.max_images, len(images))
    out = to_uint8_images(images[:n], channels=cfg.channels, size=cfg.image_size, path="data.root")
    if not cfg.labels:
        return Raw(out)
    names = tuple(str(d) for d in range(10)) if cfg.source == "mnist" else FASHION_CLASSES
    return Raw(out, labels[:n].astype(np.int64), names)


def mnist_count(cfg: Mnist | FashionMnist) -> int:
    """The training images `read_mnist` would read, from the IDX headers alone (nothing is
    downloaded); the same errors when the files are missing or do not match."""
    root = Path(cfg.root)
    found = _find_idx(root, cfg.source)
    if found is None:
        if not cfg.download:
            title = "MNIST" if cfg.source == "mnist" else "Fashion-MNIST"
            folder = root / _MNIST_DIRS[cfg.source][0]
            raise _missing(title, root, f"{folder}/train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
        return MNIST_COUNT
    images, labels = _idx_dims(found[0], ndim=3), _idx_dims(found[1], ndim=1)
    if labels[0] != images[0]:
        raise ConfigError("data.root", f"{found[1]} has {labels[0]} labels for {images[0]} images in {found[0]}")
    return images[0]


def _idx_dims(path: Path, ndim: int) -> tuple[int, ...]:
    """The dimensions in an IDX file's header (gzipped or not)."""
    header = 4 + 4 * ndim
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            raw = f.read(header)
    except (OSError, EOFError) as exc:
        raise ConfigError("data.root", f"{path} is a damaged gzip file ({exc}); delete it and download again") from None
    if len(raw) < header or raw[:4] != bytes((0, 0, 0x08, ndim)):
        raise ConfigError("data.root", f"{path} is not an IDX file of uint8 with {ndim} dimension(s)")
    return struct.unpack(f">{ndim}I", raw[4:header])


def _find_idx(root: Path, source: str) -> tuple[Path, Path] | None:
    for sub in (*_MNIST_DIRS[source], "."):
        pair = [_first_file(root / sub, _IDX_NAMES[kind]) for kind in ("images", "labels")]
        if pair[0] is not None and pair[1] is not None:
            return pair[0], pair[1]
    return None


def _first_file(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of uint8 values (gzipped or not), as an array of its declared shape."""
    raw = path.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise ConfigError("data.root", f"{path} is a damaged gzip file ({exc}); delete it and download again") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes((0, 0, 0x08, ndim)):
        raise ConfigError("data.root", f"{path} is not an IDX file of uint8 with {ndim} dimension(s)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(dims)):
        raise ConfigError("data.root", f"{path} holds {data.size} values, its header says {dims}: truncated?")
    return data.reshape(dims)


def _missing(title: str, root: Path, expected: str) -> ConfigError:
    return ConfigError(
        "data.root",
        f"{title} not found under {root}: expected {expected}. Set download: true to fetch it, "
        "or put the files there (or point data.root at the folder that holds them)",
    )
