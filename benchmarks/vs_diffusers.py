"""Training throughput of archsearch's U-Net against diffusers' UNet2DModel, same architecture.

    python benchmarks/vs_diffusers.py                       # CPU, three small sizes
    python benchmarks/vs_diffusers.py --device cuda --batch-size 64

For each size, both models are built to the same architecture (diffusers' defaults: positional
time embedding with flip_sin_to_cos and freq_shift 0, GroupNorm(32, eps 1e-5), 8 channels per
attention head, padded strided-conv downsampling, nearest + conv upsampling, a skip after the
stem, every res block and every downsample, a 4×C0 time embedding and a GN -> SiLU -> conv3x3
head), their parameter and FLOP counts are checked to be equal, and their training throughput is
measured with `archsearch.measure`'s protocol (warm-up, synchronized timed steps, median) in
the same process. Rounds alternate which model goes first, so neither always gets the warmer
caches; the median over rounds is reported, one line per size:

    size=<name> params=<n> ours=<img/s> diffusers=<img/s> ratio=<ours/diffusers>

Lines starting with '#' describe the machine. Needs `pip install archsearch[bench]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch import nn

from archsearch import UNetConfig, build_unet
from archsearch.device import configure_backends, device_info, resolve_device
from archsearch.measure import count_flops, count_params, measure
from archsearch.schema.measure import MeasureConfig
from archsearch.schema.train import TrainConfig
from archsearch.settings import resolve_run_settings

# name: (image size, widths per level, res blocks per level, attention per level)
SIZES = {
    "small": (16, (32, 64), 1, (False, True)),
    "medium": (32, (32, 64, 64), 2, (False, True, False)),
    "large": (32, (64, 128, 128), 2, (False, True, True)),
}
HEAD_CHANNELS = 8  # diffusers' attention_head_dim default


def ours_config(image_size: int, widths, blocks: int, attention) -> UNetConfig:
    """archsearch's description of the diffusers UNet2DModel below."""
    return UNetConfig.model_validate({
        "image_size": image_size,
        "in_channels": 3,
        "levels": [{"width": w, "blocks": blocks, "attention": a} for w, a in zip(widths, attention)],
        "middle": {"blocks": 2, "attention": True},
        "skip": {"combine": "concat", "taps": "block"},
        "stem": "conv3x3",
        "head": "norm_act_conv3x3",
        "block": {
            "norm": {"kind": "group", "groups": 32, "eps": 1e-5},
            "order": "pre",
            "activation": "silu",
            "time_injection": "add",
            "time_activation": True,
            "shortcut": "conv1x1",
        },
        "attention": {"head_channels": HEAD_CHANNELS, "decoder_blocks": "all"},
        "embedding": {"encoding": {"kind": "sinusoidal", "flip_sin_to_cos": True, "freq_shift": 0}},
        "down": {"kind": "conv", "padding": "symmetric"},
        "up": {"kind": "nearest_conv"},
    })


class DiffusersAdapter(nn.Module):
    """diffusers' `model(x, t).sample` behind archsearch's `model(x, t, class_labels)`."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, class_labels=None):
        return self.unet(x, t, class_labels=class_labels).sample


def diffusers_model(image_size: int, widths, blocks: int, attention) -> nn.Module:
    from diffusers import UNet2DModel

    return DiffusersAdapter(UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(widths),
        layers_per_block=blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        attention_head_dim=HEAD_CHANNELS,
        norm_num_groups=32,
        norm_eps=1e-5,
        flip_sin_to_cos=True,
        freq_shift=0,
        downsample_padding=1,
    ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per size; median reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # What a search trial with this precision measures under (the same call as archsearch.trial).
    settings = resolve_run_settings(TrainConfig(precision=args.precision), device)
    configure_backends(device)
    cfg = MeasureConfig(warmup_steps=args.warmup, repeats=args.repeats, infer=False, latency=False,
                        flops=False, max_seconds=None)
    info = device_info(device)
    print(f"# device={info['name']} torch={info['torch']} threads={info['threads']} "
          f"precision={settings.precision} batch={args.batch_size} repeats={args.repeats} rounds={args.rounds}")

    for name in args.sizes:
        image_size, widths, blocks, attention = SIZES[name]
        torch.manual_seed(0)
        models = {
            "ours": build_unet(ours_config(image_size, widths, blocks, attention)),
            "diffusers": diffusers_model(image_size, widths, blocks, attention),
        }
        # Equal parameters and equal FLOPs: the same layers, attention at the same resolutions.
        for what, count in (("parameters", lambda m: count_params(m)),
                            ("FLOPs", lambda m: count_flops(m, (3, image_size, image_size)))):
            ours_n, theirs_n = count(models["ours"]), count(models["diffusers"])
            if ours_n != theirs_n:
                print(f"size={name}: {what} differ, ours={ours_n} diffusers={theirs_n}: the "
                      f"architectures do not match", file=sys.stderr)
                return 1
        params = count_params(models["ours"])
        results: dict[str, list[float]] = {k: [] for k in models}
        for r in range(args.rounds):
            for key in (("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")):
                m = measure(models[key], (3, image_size, image_size), args.batch_size, settings, cfg)
                results[key].append(m.train_throughput)
        ours, theirs = (statistics.median(results[k]) for k in ("ours", "diffusers"))
        print(f"size={name} params={params} ours={ours:.1f} diffusers={theirs:.1f} "
              f"ratio={ours / theirs:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
