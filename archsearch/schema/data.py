"""`DataConfig`: which images a study trains on, as data.

A `data` section picks one source by its `source` tag (digits when left out); each source has only
the fields it needs:

    digits          scikit-learn's bundled 8x8 handwritten digits (1,797 images; no download)
    folder          any folder of image files (PNG, JPEG, TIFF, BMP, WebP), searched recursively
    cifar10         CIFAR-10's python pickle batches under `root`
    mnist           MNIST's IDX files under `root`
    fashion-mnist   Fashion-MNIST's IDX files under `root`
    npz / npy       NumPy arrays of images (and optionally labels)
    synthetic       procedurally drawn shapes (for tests)

Every source shares the output settings: `image_size` x `image_size` pixels, `channels` (1 or 3),
pixels in [-1, 1], and a validation split drawn from `split_seed` alone (never from the training
seed), so that every trial of a study is scored on the very same held-out images.

`channels` defaults to the source's own: 1 for the gray sources (digits, MNIST, Fashion-MNIST,
synthetic), 3 for CIFAR-10 and for image folders. Array files (npz / npy) must say it: an array
does not say whether its gray images should become RGB, and guessing would silently double or
triple the work of every trial. Importing this module imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter

from ._base import MAX_COUNT, MAX_IMAGE_SIZE, Model, Seed, tagged_union

__all__ = [
    "DATA_SOURCES",
    "DEFAULT_ROOT",
    "Digits",
    "Folder",
    "Cifar10",
    "Mnist",
    "FashionMnist",
    "Npz",
    "Npy",
    "Synthetic",
    "DataConfig",
    "DEFAULT_DATA",
    "data_adapter",
]

DEFAULT_ROOT = "~/.cache/archsearch/data"

Channels = Literal[1, 3]


def _expand(path: str) -> str:
    return str(Path(path).expanduser())


# A user path with `~` expanded at validation, so that every later message shows the real path.
UserPath = Annotated[str, AfterValidator(_expand)]


class _Common(Model):
    """Output settings shared by every source."""

    image_size: int = Field(
        16,
        ge=2,
        le=MAX_IMAGE_SIZE,
        description="Side of the square images the models see, in pixels. Sources of another size "
        "are center-cropped to a square and resized (antialiased).",
    )
    val_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="Fraction of the images held out for validation (at least one image).",
    )
    split_seed: Seed = Field(
        0,
        description="Seed of the train/validation split. The split depends on it alone (not on "
        "the training seed), so every trial is validated on the same images.",
    )
    max_images: int | None = Field(
        None,
        ge=2,
        le=MAX_COUNT,
        description="Keep only the first N images of the source (in its own order: file order, "
        "sorted paths), before the split. Default: all.",
    )


class _Labelled(_Common):
    labels: bool = Field(
        True,
        description="Keep the class labels (for class-conditional models). False drops them.",
    )


class _Root(_Labelled):
    root: UserPath = Field(
        DEFAULT_ROOT,
        description="Folder that holds the dataset files (or receives them when download is true).",
    )
    download: bool = Field(
        False,
        description="Download the official files into root (checked against their MD5) when they "
        "are missing. Off by default: nothing is fetched unless asked.",
    )


class Digits(_Labelled):
    """scikit-learn's 1,797 real 8x8 handwritten digits, bundled with it: the offline default."""

    source: Literal["digits"] = "digits"
    channels: Channels = Field(1, description="1 (gray) or 3 (the gray image repeated as RGB).")


class Folder(_Common):
    """Every image file below `path` (recursively: .png, .jpg/.jpeg, .tif/.tiff, .bmp, .webp),
    decoded with Pillow.

    Any mode is scaled by its own range onto 8 bits, never clipped: 16-bit grayscale (0..65535),
    32-bit integer and float grayscale, palette, CMYK, YCbCr, Lab and HSV color (see
    archsearch.data.images); what was converted is said once the folder is read. Files that cannot
    be decoded are skipped and reported by name. With `labels: true` the class of an image is the
    first sub-folder it sits in (`path/cat/x.png` -> `cat`), as torchvision's ImageFolder does.
    """

    source: Literal["folder"] = "folder"
    path: UserPath = Field(description="Folder to search for .png/.jpg/.jpeg/.tif/.tiff/.bmp/.webp files "
                                       "(recursively).")
    channels: Channels = Field(3, description="3 (RGB) or 1 (grayscale, Pillow's 'L' luminance).")
    labels: bool = Field(
        False,
        description="Use the first sub-folder of each image as its class label.",
    )


class Cifar10(_Root):
    """CIFAR-10's python version (`root/cifar-10-batches-py/data_batch_1..5`): 50,000 images.

    Only the five training batches are read; `test_batch` is left untouched for a final test.
    """

    source: Literal["cifar10"] = "cifar10"
    channels: Channels = Field(3, description="3 (RGB) or 1 (luminance).")


class Mnist(_Root):
    """MNIST's training IDX files (`root/mnist/train-{images-idx3,labels-idx1}-ubyte[.gz]`)."""

    source: Literal["mnist"] = "mnist"
    channels: Channels = Field(1, description="1 (gray) or 3 (the gray image repeated as RGB).")


class FashionMnist(_Root):
    """Fashion-MNIST's training IDX files (`root/fashion-mnist/...`, named as MNIST's)."""

    source: Literal["fashion-mnist"] = "fashion-mnist"
    channels: Channels = Field(1, description="1 (gray) or 3 (the gray image repeated as RGB).")


_ARRAY_LAYOUT = (
    " Layouts: (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4 (alpha is dropped). "
    "Values: integers in [0, 255], or floats in [0, 1] (or in [-1, 1] when any value is negative)."
)


class Npz(_Common):
    """Images (and optionally labels) stored under keys of one `.npz` file."""

    source: Literal["npz"] = "npz"
    path: UserPath = Field(description="The .npz file." + _ARRAY_LAYOUT)
    key: str = Field("images", description="Name of the image array in the file.")
    labels_key: str | None = Field(
        None, description="Name of an integer array of N class labels in the file. Default: no labels."
    )
    channels: Channels = Field(
        description="1 or 3; required, since an array does not say how it should be seen "
        "(gray arrays are repeated into RGB, RGB arrays are reduced by luminance)."
    )

    @property
    def labels(self) -> bool:
        """Whether class labels are read (a labels_key is given)."""
        return self.labels_key is not None


class Npy(_Common):
    """Images in one `.npy` file (and optionally labels in another)."""

    source: Literal["npy"] = "npy"
    path: UserPath = Field(description="The .npy file of images." + _ARRAY_LAYOUT)
    labels_path: UserPath | None = Field(
        None, description="A .npy file of N integer class labels. Default: no labels."
    )
    channels: Channels = Field(
        description="1 or 3; required, since an array does not say how it should be seen "
        "(gray arrays are repeated into RGB, RGB arrays are reduced by luminance)."
    )

    @property
    def labels(self) -> bool:
        """Whether class labels are read (a labels_path is given)."""
        return self.labels_path is not None


class Synthetic(_Labelled):
    """Filled circles, squares and stripes at random places and intensities (for tests).

    The label of an image is its shape: 0 circle, 1 square, 2 stripes.
    """

    source: Literal["synthetic"] = "synthetic"
    channels: Channels = Field(1, description="1 (gray shapes) or 3 (colored shapes).")
    num_images: int = Field(256, ge=2, le=1_000_000, description="How many images to draw.")
    seed: Seed = Field(0, description="Seed of the drawing (independent of split_seed).")


# `source` may be left out and then means digits: `data: {image_size: 32}` is digits at 32x32.
DataConfig = tagged_union("digits", Digits, Folder, Cifar10, Mnist, FashionMnist, Npz, Npy, Synthetic, key="source")

DATA_SOURCES: tuple[str, ...] = tuple(
    model.model_fields["source"].default
    for model in (Digits, Folder, Cifar10, Mnist, FashionMnist, Npz, Npy, Synthetic)
)

DEFAULT_DATA = Digits()

# Validates a bare `data` mapping: `data_adapter.validate_python({"source": "mnist"})`.
data_adapter: TypeAdapter[DataConfig] = TypeAdapter(DataConfig)
