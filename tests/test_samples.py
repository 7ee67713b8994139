"""Legible sample grids (archsearch.samples): nearest-neighbour enlargement to cells of about 64
pixels, and a caption strip of one or two lines above the grid, with any Pillow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont

from archsearch import samples
from archsearch.samples import MIN_CELL, add_caption, auto_scale, caption_font_size, make_grid, strip_caption

CAPTION = "trial 7 · val_loss 0.0832 · train_throughput 1,234 img/s"


def random_images(n: int, channels: int, size: int) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("size,scale", [(16, 4), (32, 2), (64, 1), (128, 1), (28, 3), (8, 8), (6, 11), (1, 64)])
def test_auto_scale_is_the_smallest_integer_making_a_cell_at_least_64_pixels(size, scale):
    assert auto_scale(size) == scale
    assert size * scale >= MIN_CELL or scale == 1
    assert scale == 1 or size * (scale - 1) < MIN_CELL


@pytest.mark.parametrize("size,channels,mode", [(16, 1, "L"), (32, 3, "RGB"), (8, 4, "RGBA")])
def test_the_default_grid_is_enlarged_to_64_pixel_cells(size, channels, mode):
    grid = make_grid(random_images(5, channels, size), rows=2, cols=3)
    cell = size * auto_scale(size)
    assert cell == 64 and grid.mode == mode
    assert grid.size == (3 * (cell + 1) + 1, 2 * (cell + 1) + 1)


@pytest.mark.parametrize("scale", [1, 2, 5])
def test_every_pixel_becomes_a_block_of_its_own_value(scale):
    images = random_images(3, 3, 4)
    grid = np.asarray(make_grid(images, rows=2, cols=2, padding=2, scale=scale))  # (H', W', 3)
    source = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    step = 4 * scale + 2
    for i in range(3):
        r, c = divmod(i, 2)
        cell = grid[2 + r * step: 2 + r * step + 4 * scale, 2 + c * step: 2 + c * step + 4 * scale]
        for y in range(4):
            for x in range(4):
                block = cell[y * scale:(y + 1) * scale, x * scale:(x + 1) * scale]
                assert (block == source[i, y, x]).all(), (i, y, x)
    assert (grid[:2] == 0).all() and (grid[:, 2 + 4 * scale: 2 + 4 * scale + 2] == 0).all()  # padding stays black
    assert (grid[2 + step:, 2 + step:] == 0).all()  # the empty fourth cell


def test_a_bad_scale_is_refused():
    with pytest.raises(ValueError, match="scale 0"):
        make_grid(random_images(1, 1, 4), 1, 1, scale=0)


@pytest.mark.parametrize("cell,size", [(16, 12), (64, 13), (100, 20), (400, 24)])
def test_the_caption_font_grows_with_the_cells_within_bounds(cell, size):
    assert caption_font_size(cell) == size


def test_a_caption_adds_one_strip_of_text_above_a_wide_grid():
    images = random_images(64, 1, 16)
    plain = make_grid(images, 8, 8)
    captioned = make_grid(images, 8, 8, caption=CAPTION)
    strip = captioned.height - plain.height
    assert captioned.width == plain.width == 8 * 65 + 1
    assert caption_font_size(64) <= strip <= 2.5 * caption_font_size(64)  # one line, with margins
    assert np.array_equal(np.asarray(strip_caption(captioned, plain.size)), np.asarray(plain))  # the grid, untouched
    text = np.asarray(captioned)[:strip]
    assert text.max() > 150 and (text == 0).mean() > 0.5  # light text on black


def test_a_narrow_grid_wraps_the_caption_onto_two_lines_and_widens_for_it():
    images = random_images(2, 3, 16)
    plain = make_grid(images, 1, 2)
    one_line = make_grid(images, 1, 2, caption="trial 7")
    two_lines = make_grid(images, 1, 2, caption=CAPTION)
    assert one_line.width == plain.width
    first = one_line.height - plain.height
    second = two_lines.height - plain.height
    assert 1.5 * first < second < 2.5 * first  # a second line
    assert two_lines.width > plain.width  # the longer line does not fit 131 pixels
    assert np.array_equal(np.asarray(strip_caption(two_lines, plain.size)), np.asarray(plain))  # centred under it


def test_an_explicit_newline_splits_the_caption():
    grid = make_grid(random_images(64, 1, 16), 8, 8)
    one = add_caption(grid, "trial 7 · val_loss 0.0832")
    two = add_caption(grid, "trial 7\nval_loss 0.0832")
    assert two.height - grid.height > 1.5 * (one.height - grid.height)


def test_without_a_scalable_font_the_bitmap_font_is_drawn_enlarged(monkeypatch):
    bitmap = ImageFont.load_default_imagefont()

    def old_pillow(size=None):  # Pillow before 10.1: no size, a bitmap font
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return bitmap

    grid = make_grid(random_images(6, 1, 32), 2, 3)
    modern = add_caption(grid, CAPTION)
    monkeypatch.setattr(samples.ImageFont, "load_default", old_pillow)
    old = add_caption(grid, CAPTION + " · ★")  # a character the bitmap font lacks is replaced, not an error
    assert old.mode == grid.mode and old.height > grid.height + 11
    assert np.array_equal(np.asarray(strip_caption(old, grid.size)), np.asarray(grid))
    assert abs((old.height - grid.height) - (modern.height - grid.height)) < 20  # about the same size of text


def test_captions_are_opaque_on_rgba_grids():
    captioned = make_grid(random_images(4, 4, 16), 2, 2, caption=CAPTION)
    assert captioned.mode == "RGBA" and (np.asarray(captioned)[:10, :, 3] == 255).all()


def test_a_saved_captioned_grid_reopens_as_written(tmp_path):
    grid = make_grid(random_images(4, 1, 16), 2, 2, caption=CAPTION)
    grid.save(tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == grid.size and im.mode == "L"


# --------------------------------------------------------------------------- archsearch sample


def sample(*args):
    from typer.testing import CliRunner

    from archsearch.cli import app

    result = CliRunner().invoke(app, ["sample", *map(str, args)])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def checkpoint_of_16px(tmp_path):
    """Where a study keeps a trial's weights, and the weights of a 16x16 one-channel U-Net."""
    from export_study import save_random_checkpoint, trial_config

    return lambda path: save_random_checkpoint(tmp_path / path, trial_config(0))


FAST = ("--steps", 2, "--rows", 2, "--cols", 3)


def test_a_trials_checkpoint_samples_into_its_folder_enlarged_x4(checkpoint_of_16px, tmp_path):
    path = checkpoint_of_16px("results/s/trials/3/checkpoint.pt")
    code, output = sample(path, *FAST, "--device", "cpu")
    assert code == 0, output
    out = tmp_path / "results/s/trials/3/samples.png"
    assert f"wrote {out} (2×3 ddim samples, 2 steps; 196×131 pixels)" in output
    with Image.open(out) as image:
        assert image.size == (3 * 65 + 1, 2 * 65 + 1) and image.mode == "L"


def test_another_checkpoint_samples_beside_itself_with_the_options_given(checkpoint_of_16px, tmp_path):
    path = checkpoint_of_16px("m.pt")
    code, output = sample(path, *FAST, "--scale", 2, "--sampler", "ddpm", "--seed", 3)
    assert code == 0, output
    with Image.open(tmp_path / "m-samples.png") as image:
        assert image.size == (3 * 33 + 1, 2 * 33 + 1)
    code, output = sample(path, *FAST, "--scale", 1, "--out", tmp_path / "deep" / "g.png")
    assert code == 0, output
    with Image.open(tmp_path / "deep" / "g.png") as image:
        assert image.size == (3 * 17 + 1, 2 * 17 + 1)


@pytest.mark.parametrize("args,lines", [
    (("--scale", 0), ["--scale: 0: must be at least 1"]),
    (("--steps", 0), ["--steps: 0: must be at least 1"]),
    (("--scale", -2, "--steps", 0), ["--scale: -2: must be at least 1", "--steps: 0: must be at least 1"]),
    (("--rows", 0), ["--rows: Input should be greater than or equal to 1"]),
    (("--sampler", "euler"), ["--sampler: Input tag 'euler'"]),
])
def test_bad_option_values_exit_2_naming_the_option(checkpoint_of_16px, tmp_path, args, lines):
    path = checkpoint_of_16px("m.pt")
    code, output = sample(path, *args)
    assert code == 2 and "Traceback" not in output
    for line in lines:
        assert line in output
    assert not (tmp_path / "m-samples.png").exists()


def test_weights_that_do_not_fit_their_config_exit_2(tmp_path):
    from export_study import trial_config

    from archsearch.nn import build_unet
    from archsearch.schema.train import TrainConfig
    from archsearch.train import save_checkpoint

    config = trial_config(0).model_dump(mode="json")
    config["levels"][1]["width"] = 16  # the weights are of a 32-channel second level
    path = save_checkpoint(tmp_path / "m.pt", build_unet(trial_config(0)), config, TrainConfig().model_dump(mode="json"), {})
    code, output = sample(path, *FAST)
    assert code == 2 and output.startswith(f"{path}: its weights do not fit its config (")
