"""The feature networks of the sample-quality phase: the built-in digits classifier, the user's
`module:function`, and the offline rules of inception and dinov2."""

import sys
import textwrap

import pytest
import torch

from archsearch.data import load_data
from archsearch.errors import ConfigError
from archsearch.quality import FeatureStats, frechet_distance, load_features
from archsearch.quality.digits import TRAINED, WEIGHTS, DigitsNet
from archsearch.quality.features import INCEPTION_FILE, check_features
from archsearch.quality.train_digits import accuracy, main
from archsearch.schema.data import DEFAULT_DATA
from archsearch.schema.quality import QualityConfig


@pytest.fixture(scope="module")
def digits():
    return load_data(DEFAULT_DATA)


@pytest.fixture(scope="module")
def net():
    return load_features(QualityConfig(), "digits")


def test_shipped_weights_have_the_documented_held_out_accuracy(digits):
    model = DigitsNet()
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    assert len(digits.train) == TRAINED["train_images"] and len(digits.val) == TRAINED["val_images"]
    assert accuracy(model, digits.val, digits.val_labels) == pytest.approx(TRAINED["val_accuracy"], abs=6e-4)


def test_digits_features_order_real_shuffled_and_noise(digits, net):
    """FD(train, val) << FD(train, shuffled pixels) << FD(train, noise)."""
    g = torch.Generator().manual_seed(0)
    val = digits.val
    shuffled = val.flatten(1)[:, torch.randperm(val[0].numel(), generator=g)].view_as(val)
    noise = torch.rand(val.shape, generator=g) * 2 - 1
    train = FeatureStats.of(net.embed(digits.train))

    def fd(images):
        return frechet_distance(*FeatureStats.of(net.embed(images)).gaussian, *train.gaussian)

    real, scrambled, random = fd(val), fd(shuffled), fd(noise)
    assert 20 * real < scrambled < random


def test_digits_features_take_any_size_and_channels(net):
    for shape in [(3, 1, 8, 8), (3, 3, 16, 16), (3, 1, 28, 28)]:
        assert net.embed(torch.zeros(shape)).shape == (3, 64)


def test_the_training_script_trains_on_the_training_split_and_writes_loadable_weights(tmp_path, capsys):
    out = tmp_path / "w.pt"
    main(["--epochs", "1", "--out", str(out)])
    assert "validation accuracy" in capsys.readouterr().out
    model = DigitsNet()
    model.load_state_dict(torch.load(out, weights_only=True))
    assert float(model.scale) != 1.0  # the feature scale was set from the training images


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_features.py").write_text(textwrap.dedent("""
        import torch
        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
        def not_a_module():
            return 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_features"
    sys.modules.pop("my_features", None)


def test_a_users_module_function_gives_the_features(user_module):
    net = load_features(QualityConfig(features=f"{user_module}:make"), "folder")
    assert net.embed(torch.zeros(4, 1, 8, 8)).shape == (4, 5)
    assert net.key.startswith("my_features.make-")


def test_a_users_function_that_is_not_a_module_factory_is_a_config_error(user_module):
    with pytest.raises(ConfigError, match="not an nn.Module"):
        load_features(QualityConfig(features=f"{user_module}:not_a_module"), "folder")
    with pytest.raises(ConfigError, match="no function missing"):
        load_features(QualityConfig(features=f"{user_module}:missing"), "folder")
    assert check_features(QualityConfig(features="no_such_module_xyz:make"), "folder")[0].path == "eval.quality.features"


def test_inception_without_its_weights_says_which_file_and_where_from(tmp_path):
    problems = check_features(QualityConfig(features="inception", cache_dir=str(tmp_path)), "cifar10")
    message = str(problems[0])
    assert INCEPTION_FILE in message and "https://github.com/toshas/torch-fidelity" in message and str(tmp_path) in message
    # auto means inception for data other than the digits
    assert check_features(QualityConfig(cache_dir=str(tmp_path)), "folder")
    assert check_features(QualityConfig(cache_dir=str(tmp_path)), "digits") == []


def _importable(module: str) -> str | None:
    try:
        __import__(module)
    except Exception as exc:  # noqa: BLE001 - torchvision built for another torch raises RuntimeError
        return f"{module} does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return None


def test_inception_loads_its_weights_from_a_given_path_and_gives_2048_features():
    why = _importable("torch_fidelity")
    if why:
        pytest.skip(why)
    from archsearch.quality.features import weights_path

    cfg = QualityConfig(features="inception")  # the weights where a user keeps them
    if not weights_path(cfg, "inception").is_file():
        pytest.skip(f"the Inception weights are not at {weights_path(cfg, 'inception')} (no network in tests)")
    assert load_features(cfg, "cifar10").embed(torch.zeros(2, 3, 32, 32)).shape == (2, 2048)


def test_dinov2_loads_its_weights_from_a_given_path_and_gives_1024_features():
    cfg = QualityConfig(features="dinov2")
    problems = check_features(cfg, "cifar10")
    if problems:
        pytest.skip(f"DINOv2 is not available offline here: {problems[0]}")
    assert load_features(cfg, "cifar10").embed(torch.zeros(2, 3, 32, 32)).shape == (2, 1024)


def test_weights_already_in_torch_hubs_checkpoints_are_found(tmp_path, monkeypatch):
    from archsearch.quality.features import weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = QualityConfig(features="inception", cache_dir=str(tmp_path / "cache"))
    assert weights_path(cfg, "inception") == tmp_path / "cache" / INCEPTION_FILE  # neither: the one errors name
    hub = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"weights")
    assert weights_path(cfg, "inception") == hub
    assert not any("weights file" in str(p) for p in check_features(cfg, "cifar10"))
    assert weights_path(QualityConfig(features_weights=str(tmp_path / "w.pth")), "inception") == tmp_path / "w.pth"
