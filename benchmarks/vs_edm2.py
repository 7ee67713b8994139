"""The edm2 presets against EDM2's own U-Net: the same weights, the same outputs.

EDM2 (Karras et al. 2024, NVlabs/edm2) is under CC BY-NC-SA, so its code is only run here, from
a checkout extracted by the user, never imported by the package or the tests:

    git --git-dir=EDM2.git archive HEAD training torch_utils dnnlib | tar -x -C /tmp/edm2-ref
    python benchmarks/vs_edm2.py --edm2 /tmp/edm2-ref > benchmarks/data/vs_edm2.json

For each preset (edm2-img512-xs, edm2-img64-s), EDM2's UNet is instantiated as its Precond does
(img_resolution 64, label_dim 1000, the preset's channels), its scalar gains (zero at init, which
would make both outputs zero) are drawn from N(0, 1), and its state dict is renamed into the
preset's network: enc.64x64_conv -> stem, enc.RxR_blockJ -> encoder.L.blocks.J (its attention
-> encoder.L.attentions.J), enc.RxR_down -> encoder.L-1.resample, dec.RxR_in0 / in1 -> middle,
dec.RxR_up -> decoder.L+1.resample, conv_res0 / conv_res1 / emb_linear / conv_skip -> conv1 /
conv2 / emb_proj / shortcut. EDM2 lays its fused qkv out as (heads, channels, 3); archsearch's
qkv_order new as (3, heads, channels), so those rows are permuted. The preset is built with
embedding.encoding.input_scale 1, so that both networks read EDM2's noise label ln(σ)/4.

Both run in fp32 on the CPU on the same inputs (x ~ N(0, 1), σ log-uniform in [0.002, 80],
random classes), in eval mode and then in training mode (dropout 0), where forced weight
normalization rewrites the stored weights; the script prints, per preset, the parameter counts,
the output RMS, the max abs differences of the outputs and of the rewritten weights, as JSON. benchmarks/data/vs_edm2.json was recorded from the
checkout benchmarks/edm_counts.py counted (NVlabs/edm2 4bf8162), batch 2, seed 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from archsearch.nn import build_unet
from archsearch.schema import preset_dict, unet_config_from_dict
from archsearch.schema.loading import deep_merge

PRESETS = {"edm2-img512-xs": (4, 128), "edm2-img64-s": (3, 192)}  # name: (image channels, model_channels)
LEAVES = {"conv_res0": "conv1", "conv_res1": "conv2", "emb_linear": "emb_proj", "conv_skip": "shortcut",
          "emb_gain": "emb_gain", "attn_qkv": "qkv", "attn_proj": "proj"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edm2", required=True, help="an extracted NVlabs/edm2 checkout (holds training/networks_edm2.py)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, args.edm2)
    from training.networks_edm2 import UNet as EDM2UNet  # EDM2's code, run only to compare

    out = {}
    for name, (channels, model_channels) in PRESETS.items():
        torch.manual_seed(args.seed)
        theirs = EDM2UNet(img_resolution=64, img_channels=channels, label_dim=1000, model_channels=model_channels).eval()
        with torch.no_grad():
            for p in theirs.parameters():
                if p.ndim == 0:
                    p.copy_(torch.randn([]))
        config = unet_config_from_dict(deep_merge(preset_dict(name), {"embedding": {"encoding": {"input_scale": 1.0}}}))
        ours = build_unet(config).eval()
        ours.load_state_dict(rename(theirs, ours), strict=True)

        g = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.batch_size, channels, 64, 64, generator=g)
        sigma = torch.exp(torch.empty(args.batch_size).uniform_(math.log(0.002), math.log(80.0), generator=g))
        labels = torch.randint(0, 1000, (args.batch_size,), generator=g)
        noise_labels = sigma.log() / 4  # EDM2's Precond's c_noise
        one_hot = torch.nn.functional.one_hot(labels, 1000).float()
        with torch.no_grad():
            a = theirs(x, noise_labels, one_hot)
            b = ours(x, noise_labels, labels)
            # Training mode: forced weight normalization rewrites both networks' stored weights first.
            a_train = theirs.train()(x, noise_labels, one_hot)
            b_train = ours.train()(x, noise_labels, labels)
        rewritten = rename(theirs, ours)
        weight_diff = max(float((rewritten[k] - v).abs().max()) for k, v in ours.state_dict().items())
        out[name] = {
            "edm2_params": sum(p.numel() for p in theirs.parameters()),
            "archsearch_params": sum(p.numel() for p in ours.parameters()),
            "output_rms": float(a.square().mean().sqrt()),
            "max_abs_diff_fp32": float((a - b).abs().max()),
            "max_abs_diff_fp32_train_mode": float((a_train - b_train).abs().max()),
            "max_abs_diff_of_rewritten_weights": weight_diff,
            "batch_size": args.batch_size,
        }
    out["edm2_checkout"] = args.edm2
    print(json.dumps(out, indent=1))


def rename(theirs, ours) -> dict[str, torch.Tensor]:
    """EDM2's state dict under the preset network's names and layouts."""
    plan = ours.plan
    heads = {f"{module}.attentions.{j}": b.attention_heads
             for module, blocks in _block_lists(plan) for j, b in enumerate(blocks) if b.attention_heads}
    heads["middle.attentions.0"] = plan.middle_attention_heads
    state = {}
    for key, tensor in theirs.state_dict().items():
        where, _, leaf = key.rpartition(".")
        top = {"emb_fourier": "embedding.encoding", "emb_noise": "embedding.noise", "emb_label": "embedding.classes",
               "out_conv": "head.conv"}
        if key == "out_gain":
            state["head.gain"] = tensor
            continue
        if where in top:
            state[f"{top[where]}.{leaf}"] = tensor
            continue
        side, name, module = key.split(".")[0], key.split(".")[1], key.split(".")[2]
        res, _, part = name.partition("_")
        level = int(math.log2(64 // int(res.split("x")[0])))
        if part == "conv":
            state[f"stem.{leaf}"] = tensor
            continue
        if side == "enc" and part == "down":
            prefix = f"encoder.{level - 1}.resample"
        elif side == "dec" and part == "up":
            prefix = f"decoder.{level + 1}.resample"
        elif side == "dec" and part.startswith("in"):
            prefix = f"middle.blocks.{int(part[2:])}"
        else:
            prefix = f"{'encoder' if side == 'enc' else 'decoder'}.{level}.blocks.{int(part[len('block'):])}"
        new_leaf = LEAVES[module]
        if module in ("attn_qkv", "attn_proj"):
            prefix = prefix.replace(".blocks.", ".attentions.")
            if module == "attn_qkv":  # rows (heads, d, 3) -> (3, heads, d)
                c = tensor.shape[0] // 3
                tensor = tensor.reshape(c, 3, *tensor.shape[1:]).transpose(0, 1).reshape(tensor.shape)
            assert prefix in heads, prefix
        key_out = f"{prefix}.{new_leaf}" + ("" if module == "emb_gain" else f".{leaf}")
        state[key_out] = tensor
    return state


def _block_lists(plan):
    for lv in plan.levels:
        yield f"encoder.{lv.index}", lv.encoder
        yield f"decoder.{lv.index}", lv.decoder


if __name__ == "__main__":
    main()
