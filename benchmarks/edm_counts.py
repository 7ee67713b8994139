"""Parameter counts of EDM's and EDM2's own networks, for the presets that reproduce them.

EDM (Karras et al. 2022, NVlabs/edm) is not pip-installable and is under CC BY-NC-SA, so its
code is only run here, from a checkout extracted by the user, never imported by the package or
the tests; the tests pin the figures this script prints.

    git --git-dir=EDM.git archive HEAD training torch_utils dnnlib | tar -x -C /tmp/edm-ref
    git --git-dir=EDM2.git archive HEAD training torch_utils dnnlib | tar -x -C /tmp/edm2-ref
    python benchmarks/edm_counts.py --edm /tmp/edm-ref --edm2 /tmp/edm2-ref > benchmarks/data/edm_counts.json

The settings are those of EDM's train.py: --arch=ddpmpp and --arch=ncsnpp for unconditional
CIFAR-10 (with and without the 9-wide augmentation label that --augment adds) and class-conditional
CIFAR-10 (--cond=1: 10 labels); the same SongUNets for FFHQ / AFHQv2 at 64x64 (--cres=1,2,2,2);
--arch=adm for class-conditional ImageNet-64 (trained with --augment=0). EDM2 (Karras et al. 2024,
NVlabs/edm2, also non-commercial): its class-conditional U-Net at the defaults of `Precond`
(channel_mult 1,2,3,4, 3 blocks, attention at 16 and 8) for img512-xs (64x64x4 latents, 128
channels) and img64-s (64x64x3 pixels, 192 channels), and their wider sizes (train_edm2.py's s to
xxl), the U-Net alone: Precond's `logvar` layer (128 more parameters) is the training-side loss
weighting, out of the presets' scope.

benchmarks/data/edm_counts.json was recorded from NVlabs/edm 008a4e5 and NVlabs/edm2 4bf8162.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

CIFAR10 = dict(img_resolution=32, in_channels=3, out_channels=3, label_dim=0, model_channels=128, channel_mult=[2, 2, 2])
DDPMPP = dict(embedding_type="positional", encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1])
NCSNPP = dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard", channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
IMAGENET64_ADM = dict(
    img_resolution=64, in_channels=3, out_channels=3, label_dim=1000, model_channels=192,
    channel_mult=[1, 2, 3, 4], num_blocks=3, attn_resolutions=[32, 16, 8], dropout=0.1,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edm", required=True, help="an extracted NVlabs/edm checkout (holds training/networks.py)")
    parser.add_argument("--edm2", help="an extracted NVlabs/edm2 checkout (holds training/networks_edm2.py)")
    args = parser.parse_args()
    counts = edm_counts(args.edm)
    if args.edm2:
        counts |= edm2_counts(args.edm2)
    print(json.dumps(counts, indent=1))


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def edm_counts(checkout: str) -> dict[str, int]:
    sys.path.insert(0, checkout)
    from training.networks import DhariwalUNet, SongUNet  # EDM's code, run only to count

    counts = {}
    for name, arch in (("edm-ddpmpp-cifar10", DDPMPP), ("edm-ncsnpp-cifar10", NCSNPP)):
        for augment_dim in (0, 9):
            counts[f"{name} augment_dim={augment_dim}"] = count(SongUNet(**CIFAR10, **arch, augment_dim=augment_dim))
    # EDM's class-conditional CIFAR-10 (--cond=1, with --augment): SongUNet's map_label on top.
    counts["edm-ddpmpp-cifar10 label_dim=10 augment_dim=9"] = count(SongUNet(**{**CIFAR10, "label_dim": 10}, **DDPMPP, augment_dim=9))
    # EDM's FFHQ / AFHQv2 64x64 networks (--cres=1,2,2,2 --augment), unconditional and with 10 labels.
    for name, arch in (("edm-ddpmpp-ffhq64", DDPMPP), ("edm-ncsnpp-ffhq64", NCSNPP)):
        for label_dim in (0, 10):
            counts[f"{name} label_dim={label_dim} augment_dim=9"] = count(SongUNet(
                **{**CIFAR10, "img_resolution": 64, "channel_mult": [1, 2, 2, 2], "label_dim": label_dim}, **arch, augment_dim=9))
    counts["edm-adm-imagenet64 augment_dim=0"] = count(DhariwalUNet(**IMAGENET64_ADM))
    sys.path.remove(checkout)
    for module in [m for m in sys.modules if m.split(".")[0] in ("training", "torch_utils", "dnnlib")]:
        del sys.modules[module]  # EDM2's packages have the same names
    return counts


def edm2_counts(checkout: str) -> dict[str, int]:
    sys.path.insert(0, checkout)
    from training.networks_edm2 import Precond  # EDM2's code, run only to count

    counts = {}
    for name, channels, model_channels in (("edm2-img512-xs", 4, 128), ("edm2-img64-s", 3, 192)):
        net = Precond(img_resolution=64, img_channels=channels, label_dim=1000, model_channels=model_channels)
        counts[f"{name} unet"] = count(net.unet)
    # EDM2's other sizes (train_edm2.py's presets): the same networks, wider.
    for name, channels, sizes in (("edm2-img512", 4, {"s": 192, "m": 256, "l": 320, "xl": 384, "xxl": 448}),
                                  ("edm2-img64", 3, {"m": 256, "l": 320, "xl": 384})):
        for size, model_channels in sizes.items():
            with torch.device("meta"):
                net = Precond(img_resolution=64, img_channels=channels, label_dim=1000, model_channels=model_channels)
            counts[f"{name}-{size} unet (model_channels={model_channels})"] = count(net.unet)
    return counts


if __name__ == "__main__":
    main()
