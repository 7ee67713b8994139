"""archsearch's EDM-SongUNet presets against EDM's own SongUNet: the same weights, the same outputs.

    python benchmarks/vs_edm.py --edm /tmp/edm-ref > benchmarks/data/vs_edm.json

EDM (Karras et al. 2022, NVlabs/edm) is under CC BY-NC-SA: its code is only run here, from a
checkout the user extracted (see benchmarks/edm_counts.py), never imported by the package or the
tests. For each setting below, EDM's SongUNet is built with train.py's CIFAR-10 arguments and
archsearch's preset with the matching overrides; every EDM parameter is set to random values
(EDM initializes its last layers to 1e-5 and GroupNorm to 1 and 0, which would let a misplaced
layer go unnoticed), copied into archsearch's model through `RULES` (a name map) and the qkv
channel permutation, and both run in fp32 eval mode on the same random images, noise labels and
augmentation labels. The recorded figure is the largest absolute difference of the outputs
(target 1e-5); each model's parameter count is recorded too.

Noise labels are EDMPrecond's c_noise = ln(σ)/4 with ln σ ~ N(-1.2, 1.2²), the distribution EDM
trains with. On DDPM's timestep scale ([0, 1000), VPPrecond) DDPM++ still agrees to 4.5e-6, but
NCSN++'s Fourier arguments reach 1e5 there, where the order of the float multiplications (EDM
t·(2πf), archsearch (2πt)·f) alone moves its output by about 2e-3; NCSN++ is run on VE's ln(σ/2)
or EDM's ln(σ)/4, a few units wide. benchmarks/data/vs_edm.json was recorded from NVlabs/edm 008a4e5.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import torch

from archsearch.nn import build_unet
from archsearch.schema import preset_dict, unet_config_from_dict
from archsearch.schema.loading import deep_merge

CIFAR10 = {"img_resolution": 32, "in_channels": 3, "out_channels": 3, "label_dim": 0, "model_channels": 128,
           "channel_mult": [2, 2, 2], "num_blocks": 4, "attn_resolutions": [16], "dropout": 0.13}
DDPMPP = {"embedding_type": "positional", "encoder_type": "standard", "decoder_type": "standard",
          "channel_mult_noise": 1, "resample_filter": [1, 1]}
NCSNPP = {"embedding_type": "fourier", "encoder_type": "residual", "decoder_type": "standard",
          "channel_mult_noise": 2, "resample_filter": [1, 3, 3, 1]}

# name: (EDM SongUNet arguments beyond CIFAR10, archsearch preset, overrides of the preset)
SETTINGS = {
    "ddpmpp": (DDPMPP, "edm-ddpmpp-cifar10", {}),
    "ddpmpp augment_dim=9": ({**DDPMPP, "augment_dim": 9}, "edm-ddpmpp-cifar10", {"embedding": {"augment_dim": 9}}),
    "ncsnpp": (NCSNPP, "edm-ncsnpp-cifar10", {}),
    "ncsnpp augment_dim=9": ({**NCSNPP, "augment_dim": 9}, "edm-ncsnpp-cifar10", {"embedding": {"augment_dim": 9}}),
    # The other progressive paths EDM offers, on NCSN++'s FIR filter ...
    "ncsnpp encoder_type=skip decoder_type=skip": ({**NCSNPP, "encoder_type": "skip", "decoder_type": "skip"},
                                                   "edm-ncsnpp-cifar10", {"encoder_type": "skip", "decoder_type": "skip"}),
    # ... and on DDPM++'s box filter (the avg-pool / nearest fast paths).
    "ddpmpp encoder_type=residual decoder_type=skip": ({**DDPMPP, "encoder_type": "residual", "decoder_type": "skip"},
                                                       "edm-ddpmpp-cifar10", {"encoder_type": "residual", "decoder_type": "skip"}),
    "ddpmpp encoder_type=skip": ({**DDPMPP, "encoder_type": "skip"}, "edm-ddpmpp-cifar10", {"encoder_type": "skip"}),
    # EDM's class-conditional CIFAR-10 (train.py --cond=1 --augment): the one-hot label through map_label.
    "ddpmpp label_dim=10 augment_dim=9": ({**DDPMPP, "label_dim": 10, "augment_dim": 9}, "edm-ddpmpp-cifar10",
                                          {"num_classes": 10, "embedding": {"class_input": "linear", "augment_dim": 9}}),
}
RESOLUTIONS = {32: 0, 16: 1, 8: 2}  # EDM names modules by resolution, archsearch by level
TOP = len(RESOLUTIONS) - 1

# EDM parameter name -> archsearch's, as (pattern, replacement); the first match wins. `{L}` is
# the level of the resolution in the name, `{L-1}` / `{L+1}` its neighbours (a downsample into a
# level belongs to the encoder stage above it, an upsample out of one to the decoder stage below).
RULES = [
    (r"map_layer0\.(.*)", "embedding.mlp.0.{0}"),
    (r"map_layer1\.(.*)", "embedding.mlp.2.{0}"),
    (r"map_augment\.weight", "embedding.augment.weight"),
    (r"map_label\.(.*)", "embedding.class_linear.{0}"),
    (r"map_noise\.freqs", "embedding.encoding.freqs"),
    (r"enc\.(\d+)x\d+_conv\.(.*)", "stem.{1}"),
    (r"enc\.(\d+)x\d+_block(\d+)\.(norm2|qkv|proj)\.(.*)", "encoder.{L}.attentions.{1}.{A2}.{3}"),
    (r"enc\.(\d+)x\d+_block(\d+)\.(\w+)\.(.*)", "encoder.{L}.blocks.{1}.{B2}.{3}"),
    (r"enc\.(\d+)x\d+_down\.(\w+)\.(.*)", "encoder.{L-1}.resample.{B1}.{2}"),
    (r"enc\.(\d+)x\d+_aux_(?:residual|skip)\.(.*)", "encoder_aux.{L}.conv.{1}"),
    (r"dec\.(\d+)x\d+_in0\.(norm2|qkv|proj)\.(.*)", "middle.attentions.0.{A1}.{2}"),
    (r"dec\.(\d+)x\d+_in(\d)\.(\w+)\.(.*)", "middle.blocks.{1}.{B2}.{3}"),
    (r"dec\.(\d+)x\d+_up\.(\w+)\.(.*)", "decoder.{L+1}.resample.{B1}.{2}"),
    (r"dec\.(\d+)x\d+_block(\d+)\.(norm2|qkv|proj)\.(.*)", "decoder.{L}.attentions.{1}.{A2}.{3}"),
    (r"dec\.(\d+)x\d+_block(\d+)\.(\w+)\.(.*)", "decoder.{L}.blocks.{1}.{B2}.{3}"),
    (r"dec\.(\d+)x\d+_aux_(norm|conv)\.(.*)", "{H}.{1}.{2}"),
]
BLOCK_LEAVES = {"norm0": "norm1", "conv0": "conv1", "affine": "emb_proj", "norm1": "norm2", "conv1": "conv2", "skip": "shortcut"}
ATTENTION_LEAVES = {"norm2": "norm", "qkv": "qkv", "proj": "proj"}
FIXED = re.compile(r".*resample_filter$")  # EDM's FIR filter buffers; archsearch derives them from the config


def our_name(theirs: str) -> str:
    for pattern, template in RULES:
        m = re.fullmatch(pattern, theirs)
        if not m:
            continue
        groups = m.groups()
        out = template
        if "{L" in out or "{H}" in out:
            level = RESOLUTIONS[int(groups[0])]
            out = (out.replace("{L-1}", str(level - 1)).replace("{L+1}", str(level + 1)).replace("{L}", str(level))
                   .replace("{H}", "head" if level == 0 else f"decoder_aux.{level}"))
        for i, g in enumerate(groups):
            out = out.replace(f"{{A{i}}}", ATTENTION_LEAVES.get(g, g)).replace(f"{{B{i}}}", BLOCK_LEAVES.get(g, g))
            out = out.replace(f"{{{i}}}", g)
        return out
    raise KeyError(f"no rule maps EDM's {theirs}")


def qkv_to_ours(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    """EDM reads its qkv conv's 3C output channels as (heads, C / heads, 3); archsearch's
    attention.qkv_order new reads them as (3, heads, C / heads)."""
    rest = tensor.shape[1:]
    c = tensor.shape[0] // 3
    return tensor.reshape(heads, c // heads, 3, *rest).permute(2, 0, 1, *range(3, 3 + len(rest))).reshape(3 * c, *rest)


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter random and O(1)-preserving: weights ~ N(0, 1/fan_in), norm scales around
    1, biases and shifts around 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.ndim > 1:
                p.copy_(noise / p[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)


def compare(song_unet, name: str, seed: int = 0) -> dict:
    edm_args, preset, overrides = SETTINGS[name]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # EDM's Fourier frequencies
    theirs = song_unet(**{**CIFAR10, **edm_args}).eval()
    randomize(theirs, g)
    ours = build_unet(unet_config_from_dict(deep_merge(preset_dict(preset), overrides))).eval()

    state = {}
    for key, tensor in theirs.state_dict().items():
        if FIXED.match(key):
            continue
        mine = our_name(key)
        state[mine] = qkv_to_ours(tensor, 1) if ".qkv." in mine else tensor  # SongUNet: 1 head
    ours.load_state_dict(state, strict=True)  # every key of both sides, mapped once

    batch = 4
    x = torch.randn(batch, 3, 32, 32, generator=g)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(batch, generator=g))
    noise_labels = sigma.log() / 4  # EDMPrecond's c_noise
    augment = torch.randn(batch, 9, generator=g) if edm_args.get("augment_dim") else None
    labels = torch.tensor([0, 3, 9, -1])[:batch] if edm_args.get("label_dim") else None  # -1: no label
    one_hot = None  # EDM takes one-hot rows (zeros for no label), archsearch the indices
    if labels is not None:
        one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), edm_args["label_dim"]).float()
        one_hot[labels < 0] = 0
    with torch.no_grad():
        a = theirs(x, noise_labels, one_hot, augment_labels=augment)
        b = ours(x, noise_labels, labels, augment_labels=augment)
    return {
        "edm_params": sum(p.numel() for p in theirs.parameters()),
        "archsearch_params": sum(p.numel() for p in ours.parameters()),
        "max_abs_output": float(a.abs().max()),
        "max_abs_difference": float((a - b).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edm", required=True, help="an extracted NVlabs/edm checkout (holds training/networks.py)")
    parser.add_argument("--only", choices=list(SETTINGS), action="append", help="compare only these settings")
    args = parser.parse_args()
    sys.path.insert(0, args.edm)
    from training.networks import SongUNet  # EDM's code, run only to compare

    results = {name: compare(SongUNet, name) for name in (args.only or SETTINGS)}
    for name, r in results.items():
        print(f"# {name}: params edm={r['edm_params']:,} archsearch={r['archsearch_params']:,} "
              f"max|out|={r['max_abs_output']:.3g} max|diff|={r['max_abs_difference']:.3g}", file=sys.stderr)
    print(json.dumps({"tolerance": 1e-5, "dtype": "float32", "noise_labels": "ln(sigma)/4, ln sigma ~ N(-1.2, 1.2^2)",
                      "settings": results}, indent=1))


if __name__ == "__main__":
    main()
