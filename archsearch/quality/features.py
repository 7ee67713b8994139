"""Feature networks of the sample-quality phase, by name, offline.

    problems = check_features(cfg, "digits", "eval.quality")   # torch-free: what validate reports
    net = load_features(cfg, "digits")                          # a FeatureNetwork
    net.embed(images)                                           # (N, C, H, W) in [-1, 1] -> (N, d) float32 numpy
    net.key                                                     # names it in the reference cache

- `digits`: archsearch.quality.digits, shipped with the package.
- `inception`: FID's InceptionV3 in torch-fidelity's port (bit-exact with the TensorFlow
  original), pool3's 2048 features, from the weights file torch-fidelity publishes
  (`INCEPTION_FILE`, under `cache_dir` or where torch.hub keeps downloads). Needs the `quality` extra (`pip install -e '.[quality]'`); torch-fidelity
  imports torchvision, which must match the installed torch.
- `dinov2`: DINOv2 ViT-L/14's 1024 class-token features (EDM2's FD_DINOv2), built from the
  facebookresearch/dinov2 hub code already in torch.hub's folder (`torch.hub.get_dir()`) and the
  weights file `DINOV2_FILE`; images are resized to 224 (bicubic) and normalized as ImageNet's.
- `module:function`: the user's function, called once, returning an nn.Module that maps images
  in [-1, 1] to (N, d) features.

Nothing is downloaded: a missing file or package is a ConfigError that says which file, where it
comes from and where to put it, found by `archsearch validate` before any trial.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from archsearch.errors import ConfigError
from archsearch.schema.quality import QualityConfig

__all__ = ["FeatureNetwork", "load_features", "check_features", "weights_path", "INCEPTION_FILE", "DINOV2_FILE"]

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
DINOV2_FILE = "dinov2_vitl14_pretrain.pth"
DINOV2_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/{DINOV2_FILE}"
DINOV2_REPO = "facebookresearch_dinov2_main"  # the folder torch.hub.load('facebookresearch/dinov2') fills
_FILES = {"inception": (INCEPTION_FILE, INCEPTION_URL), "dinov2": (DINOV2_FILE, DINOV2_URL)}


@dataclass
class FeatureNetwork:
    """A loaded feature network: its name, its cache key and the module itself."""

    name: str
    key: str        # the name and a hash of the weights: a changed network never reuses old statistics
    module: object  # torch.nn.Module, in eval mode, on the CPU until `embed` moves it
    calls: int = 0  # batches embedded so far (what the cache test counts)

    def embed(self, images, device=None, batch_size: int = 500):
        """(N, C, H, W) images in [-1, 1] (a float tensor) -> (N, d) float32 numpy features."""
        import torch

        device = device or torch.device("cpu")
        module = self.module.to(device)
        out = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                batch = images[start:start + batch_size].to(device, torch.float32)
                self.calls += 1
                out.append(module(batch).float().reshape(batch.shape[0], -1).cpu())
        return torch.cat(out).numpy()


def weights_path(cfg: QualityConfig, name: str) -> Path:
    """Where the weights file of `inception` or `dinov2` is read from: `features_weights`, else
    the file under `cache_dir`, else the one torch.hub (and so torch-fidelity) downloaded to its
    checkpoints folder; the first of the last two when neither is there (what errors name)."""
    if cfg.features_weights:
        return Path(cfg.features_weights)
    file = _FILES[name][0]
    torch_home = Path(os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "torch")
    candidates = [Path(cfg.cache_dir) / file, torch_home.expanduser() / "hub" / "checkpoints" / file]
    return next((path for path in candidates if path.is_file()), candidates[0])


def check_features(cfg: QualityConfig, source: str, path: str = "eval.quality") -> list[ConfigError]:
    """What would stop `load_features`, found without loading anything heavy."""
    name = cfg.resolved_features(source)
    where = f"{path}.features"
    if name == "digits":
        return []
    if name in _FILES:
        problems = []
        file, url = _FILES[name]
        weights = weights_path(cfg, name)
        if not weights.is_file():
            problems.append(ConfigError(f"{path}.features_weights" if cfg.features_weights else where,
                                        f"{name} needs its weights file {weights}, which is missing: download {url} "
                                        f"and put it there (or name the file in {path}.features_weights)"
                                        + ("; `features: auto` means inception for this data, use digits features "
                                           "only with the digits" if cfg.features == "auto" else "")))
        if name == "inception" and importlib.util.find_spec("torch_fidelity") is None:
            problems.append(ConfigError(where, "inception features need torch-fidelity: pip install -e '.[quality]'"))
        if name == "dinov2" and not _dinov2_repo().is_dir():
            problems.append(ConfigError(where, f"dinov2 features need the facebookresearch/dinov2 hub code in "
                                               f"{_dinov2_repo()}: run torch.hub.load('facebookresearch/dinov2', "
                                               "'dinov2_vitl14', pretrained=False) once with network, or clone the "
                                               "repository there"))
        return problems
    module, _, function = name.partition(":")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return [ConfigError(where, f"no module {module} to import; put it on PYTHONPATH or install it")]
    return []


def _dinov2_repo() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / DINOV2_REPO


def load_features(cfg: QualityConfig, source: str, path: str = "eval.quality") -> FeatureNetwork:
    """The feature network `cfg` names for data from `source` (ConfigError when it cannot load)."""
    problems = check_features(cfg, source, path)
    if problems:
        raise problems[0]
    name = cfg.resolved_features(source)
    if name == "digits":
        from .digits import WEIGHTS, DigitsFeatures

        return FeatureNetwork(name, f"digits-{_file_hash(WEIGHTS)}", DigitsFeatures.load(WEIGHTS))
    if name == "inception":
        weights = weights_path(cfg, name)
        return FeatureNetwork(name, f"inception-{_file_hash(weights)}", _inception(weights))
    if name == "dinov2":
        weights = weights_path(cfg, name)
        return FeatureNetwork(name, f"dinov2-{_file_hash(weights)}", _dinov2(weights))
    return _user_features(name, f"{path}.features")


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _user_features(name: str, where: str) -> FeatureNetwork:
    import torch

    module_name, _, function = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module: any failure is theirs to fix
        raise ConfigError(where, f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    make = getattr(module, function, None)
    if not callable(make):
        raise ConfigError(where, f"{module_name} has no function {function}")
    net = make()
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(where, f"{name}() returned {type(net).__name__}, not an nn.Module")
    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return FeatureNetwork(name, f"{name.replace(':', '.')}-{digest.hexdigest()[:12]}", net.eval())


class _ToUint8Rgb:
    """[-1, 1] images to the 0..255 RGB uint8 batches torch-fidelity's Inception expects."""

    def __init__(self, inception):
        import torch

        self.inception = inception
        self.torch = torch

    def __call__(self, x):
        torch = self.torch
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.inception(pixels)[0]

    def to(self, device):
        self.inception = self.inception.to(device)
        return self


def _inception(weights: Path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    return _ToUint8Rgb(net.eval())


class _Dinov2:
    """[-1, 1] images to DINOv2's class-token features at 224x224, ImageNet-normalized."""

    def __init__(self, net):
        import torch

        self.net, self.torch = net, torch
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def __call__(self, x):
        import torch.nn.functional as F

        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate((x.clamp(-1, 1) + 1) / 2, size=(224, 224), mode="bicubic", antialias=True)
        return self.net((x - self.mean.to(x.device)) / self.std.to(x.device))

    def to(self, device):
        self.net = self.net.to(device)
        return self


def _dinov2(weights: Path):
    import torch

    net = torch.hub.load(str(_dinov2_repo()), "dinov2_vitl14", source="local", pretrained=False, verbose=False)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return _Dinov2(net.eval())
