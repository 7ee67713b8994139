"""Proof that an exported model computes what archsearch's does: both built, same weights, same
random inputs, outputs compared in fp32.

    diff = max_abs_difference(ours, theirs, config)       # a float; export requires <= TOLERANCE

A trial without trained weights is compared on random ones (`random_weights`): every layer,
norms included, gets values unlike its neighbours', so a weight mapped to the wrong place shows.
archsearch's zero-initialized last layers would make both outputs exactly zero and prove nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..schema.unet import UNetConfig

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["TOLERANCE", "BATCH", "random_weights", "max_abs_difference"]

TOLERANCE = 1e-5  # fp32: a faithful export differs by float rounding only (~1e-6)
BATCH = 2  # random inputs per comparison


def random_weights(config: UNetConfig, seed: int = 0) -> dict[str, Tensor]:
    """A state dict for `config` with every tensor random (PyTorch's default init, zero-init off,
    norm scales and shifts perturbed), drawn without touching the global RNG."""
    import torch

    from ..nn import build_unet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_unet(config.model_copy(update={"zero_init": False}))
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.GroupNorm):
                    module.weight.normal_(1.0, 0.2)
                    module.bias.normal_(0.0, 0.2)
    return model.state_dict()


def _inputs(config: UNetConfig, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    size, enc = config.image_size, config.embedding.encoding
    x = torch.randn(BATCH, config.in_channels, size, size, generator=g)
    t = torch.randint(0, enc.num_timesteps if enc.kind == "learned" else 1000, (BATCH,), generator=g)
    labels = torch.randint(0, config.num_classes, (BATCH,), generator=g) if config.num_classes else None
    return x, t, labels


def max_abs_difference(ours: nn.Module, theirs: nn.Module, config: UNetConfig, seed: int = 0) -> float:
    """max |ours(x, t, y) - theirs(x, t, y)| over BATCH random inputs, both in eval mode and
    fp32 on the CPU. `theirs` is called as diffusers' UNet2DModel is (returning `.sample`)."""
    import torch

    x, t, labels = _inputs(config, seed)
    ours, theirs = ours.float().eval(), theirs.float().eval()
    with torch.no_grad():
        a = ours(x, t, labels)
        b = theirs(x, t, class_labels=labels)
    b = getattr(b, "sample", b)
    return float((a - b).abs().max())
