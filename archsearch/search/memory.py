"""Whether a study fits the machine's memory, known before anything is read or allocated.

    check_memory(estimate, data_cfg, eval_cfg, train_settings, device, spec=space)   # or ConfigError

`archsearch validate`, `run` and `ablate` call it (through archsearch.search.preflight) with the
data set's estimate (archsearch.data.estimate_data: image counts and file headers, no decoding)
before reading anything. It adds up what a trial holds at each of its peaks and refuses, with
exit 2, a study whose peak exceeds what the machine has:

    reading      the source as read, the 8-bit images made from it, conversion temporaries
    validation   the data set, plus the fixed validation inputs (archsearch.evaluate) being made:
                 min(eval.num_images, validation split) x eval.timesteps_per_image noised images
                 as float32, their noise and temporaries
    training     the data set, the validation inputs, the network's (below) weights, gradients and
                 AdamW moments (and EMA copy), and its activations for a batch of train.batch_size
                 (measure.batch_size while it is timed, eval.batch_size without gradients while
                 it is evaluated)

On the CPU all of it is the machine's memory, compared with what the kernel says can be
allocated without swapping (archsearch.load.available_memory). On CUDA the data and the
validation inputs are made on the host, and the network, its batches, the validation inputs and
a training set of up to 1 GiB live on the GPU, compared with its total memory.

The network counted is the one without which nothing could run: the smallest of the
`CANDIDATE_SAMPLES` architectures sampled from a searched space (a larger one that cannot fit is a
trial the search records as `oom` and goes on from), the fixed one of a space without
distributions, the largest variant of an ablation (each must run). Its memory is its activations: counted from its plan, per image, as the
tensors a res block keeps for its backward pass (about two of its input's and six of its
output's widths at its resolution), attention's q, k, v and output, resampling and the stem and
head. Attention scores are not counted (fused kernels do not keep them), so the count is a lower
bound: a study refused here could not run at all; one accepted may still meet `oom` trials, which
the search records and goes on from.

The message names the field whose default would save the most (`data.image_size` for images too
large, `train.batch_size` for a batch too large, ...), says how much is needed and how much there
is, and the largest value of that field that fits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

__all__ = ["Network", "Knobs", "network_cost", "largest_network", "check_memory", "PROCESS_BYTES"]

GIB = 1 << 30
PROCESS_BYTES = 512 << 20   # the interpreter, torch and its kernels, whatever the study
RESIDENT_BYTES = 1 << 30    # a training set up to this size lives on the GPU (archsearch.data.DeviceBatches)
_BLOCK_IN, _BLOCK_OUT = 2, 6  # activations a res block keeps, in widths of its input and output


@dataclass(frozen=True)
class Network:
    """What one architecture holds, by image: float32 bytes at `image_size`."""

    params: int
    train_bytes: int            # activations kept for the backward pass, per image
    infer_bytes: int            # the largest activations alive at once without gradients, per image
    image_size: int
    name: str = "the network"

    def need(self, batch_size: int) -> int:
        """Bytes to train it on a batch: activations, and weights, gradients, AdamW moments and EMA."""
        return self.train_bytes * batch_size + self.params * 20

    def at(self, image_size: int) -> Network:
        """The same architecture at another image size (activations scale with the pixels)."""
        scale = (image_size / self.image_size) ** 2
        return replace(self, train_bytes=int(self.train_bytes * scale), infer_bytes=int(self.infer_bytes * scale),
                       image_size=image_size)


def network_cost(config, params: int | None = None, name: str = "the network") -> Network:
    """Activations of a UNetConfig, from its plan (see the module docstring); `params` is counted
    on the 'meta' device when not given."""
    from ..plan import plan_unet

    plan = plan_unet(config)
    kept, peak = 0, 0

    def block(b, r: int) -> None:
        nonlocal kept, peak
        kept += (_BLOCK_IN * b.block_in_channels + _BLOCK_OUT * b.out_channels) * r * r
        if b.attention_heads:
            kept += 6 * b.out_channels * r * r  # norm, q, k, v, attention output, projection
        peak = max(peak, (b.block_in_channels + 2 * b.out_channels) * r * r)

    size = config.image_size
    for level in plan.levels:
        r = level.resolution
        for b in (*level.encoder, *level.decoder):
            block(b, r)
        kept += 2 * (level.down_channels * (r // 2) ** 2 + level.up_channels * r * r)
    for b in plan.middle:
        block(b, plan.middle_resolution)
    if plan.middle_transformer is not None:
        t = plan.middle_transformer
        kept += t.depth * t.tokens * (8 * t.width + 2 * t.mlp_channels)
        peak = max(peak, t.tokens * (t.width + t.mlp_channels))
    kept += 2 * plan.stem_channels * size * size + 3 * plan.head_in_channels * size * size
    peak = max(peak, (config.in_channels + plan.stem_channels + plan.head_in_channels) * size * size)
    if params is None:
        from ..measure import count_params
        from ..nn import meta_unet

        params = count_params(meta_unet(config))
    return Network(params, kept * 4, peak * 4 * 2, size, name)


def largest_network(spec, batch_size: int, samples: int | None = None) -> Network | None:
    """The network of `spec` (a SearchSpace or an AblationSpec) whose memory at `batch_size`
    decides whether the study can run: its fixed architecture, the largest of an ablation's
    variants (each must run), or the *smallest* of a searched space's sampled ones: a larger one
    that cannot fit is a trial recorded as `oom` (archsearch.trial), and the search goes on, so
    only a space none of whose networks fits is refused. None for a space none of whose samples
    is valid (the sampler says why)."""
    from ..errors import ConfigErrors

    named = _architectures(spec, samples)
    costs = []
    for i, (name, config) in enumerate(named):
        try:
            costs.append((i, network_cost(config, params=0, name=name)))
        except ConfigErrors:
            continue
    if not costs:
        return None
    searched = not hasattr(spec, "variant_configs") and not spec.is_fixed()
    sign = 1 if searched else -1  # the smallest of a search, the largest of the others
    # Parameters are counted (on the 'meta' device) for the few extreme by activations only.
    top = sorted(costs, key=lambda item: sign * item[1].train_bytes)[:3]
    full = [network_cost(named[i][1], name=named[i][0]) for i, _ in top]
    return (min if searched else max)(full, key=lambda n: n.need(batch_size))


def _architectures(spec, samples: int | None) -> list[tuple[str, Any]]:
    """(how a message names it, UNetConfig) of every architecture to consider."""
    if hasattr(spec, "variant_configs"):  # an ablation: every variant
        return [(f"variant {name}", config) for name, config in spec.variant_configs()]
    if spec.is_fixed():
        return [("the network", spec.fixed_architecture())]
    from ..errors import ConfigErrors
    from ..schema.loading import unet_config_from_dict
    from ..schema.paths import ARCHITECTURE
    from .sampling import CANDIDATE_SAMPLES, instantiate, random_suggester

    suggest, out = random_suggester(0), []
    for _ in range(samples or CANDIDATE_SAMPLES):  # the same seeded samples as check_candidates plans
        try:
            out.append(("the smallest sampled network", unet_config_from_dict(instantiate(spec.architecture, suggest),
                                                                            prefix=ARCHITECTURE)))
        except ConfigErrors:
            continue
    return out


@dataclass(frozen=True)
class Knobs:
    """The settings that multiply memory, by their field."""

    image_size: int
    images: int
    eval_images: int
    train_batch: int
    measure_batch: int | None   # None: the training batch size (measure.batch_size: null)
    eval_batch: int

    @property
    def timed_batch(self) -> int:
        return self.measure_batch or self.train_batch


_FIELDS = {"image_size": "data.image_size", "eval_images": "eval.num_images", "train_batch": "train.batch_size",
           "measure_batch": "measure.batch_size", "eval_batch": "eval.batch_size"}
_BIG_IMAGES = 64  # above this side, a data set too large is blamed on its image size; at or below, on its count

Part = tuple[str, int, str]  # (what, bytes, the knob it grows with: data, validation, a batch, or the network)


def _stand_in(image_size: int, channels: int) -> Network:
    """A network of unknown size (no space given): its input, output and their gradients alone."""
    px = channels * image_size**2
    return Network(0, 3 * px * 4, 2 * px * 4, image_size, "the network (its input and output alone)")


class _Model:
    """The peaks of the module docstring, for any values of the knobs."""

    def __init__(self, estimate, data_cfg, eval_cfg, network: Network | None, ema: bool, cuda: bool):
        self.estimate, self.data_cfg, self.eval_cfg = estimate, data_cfg, eval_cfg
        self.network = network or _stand_in(estimate.image_size, estimate.channels)
        self.ema, self.cuda = ema, cuda

    def peaks(self, k: Knobs) -> dict[str, list[Part]]:
        """{place: the parts of its peak}: "host", and "device" on CUDA."""
        from ..data import split_sizes

        e = self.estimate
        size = f"{e.channels}x{k.image_size}x{k.image_size}"
        px = e.channels * k.image_size**2
        n_train, n_val = split_sizes(k.images, self.data_cfg.val_fraction) if k.images >= 2 else (k.images, 0)
        shown = min(k.eval_images, n_val)
        pairs = shown * self.eval_cfg.timesteps_per_image
        held, inputs = k.images * px, 2 * pairs * px * 4   # the data set; x_t and noise of validation
        data: Part = (f"the data set ({k.images} images at {size})", held, "data")
        validation = f"validation ({shown} images x {self.eval_cfg.timesteps_per_image} timesteps)"
        host: dict[str, list[Part]] = {
            "reading": [(f"reading the data set ({e.source} at {size})", e.reading_at(k.images, k.image_size), "data")],
            "validation": [data, (validation, n_val * px * 4 + 5 * pairs * px * 4, "validation")],
        }
        device: dict[str, list[Part]] = {}
        net = self.network.at(k.image_size)
        state = net.params * (20 if self.ema else 16)
        evaluated = min(k.eval_batch, max(pairs, 1))
        resident = n_train * px if n_train * px <= RESIDENT_BYTES else k.train_batch * px
        steps = {
            "training": ("train_batch", k.train_batch, k.train_batch * (net.train_bytes + 3 * px * 4),
                         "a training batch"),
            "measuring": ("measure_batch" if k.measure_batch else "train_batch", k.timed_batch,
                          k.timed_batch * net.train_bytes + net.params * 4, "a timed batch"),
            "evaluating": ("eval_batch", evaluated, evaluated * (net.infer_bytes + 3 * px * 4), "an evaluation batch"),
        }
        for phase, (knob, batch, activations, what) in steps.items():
            parts: list[Part] = [(f"{what} of {batch} through {net.name}", activations, knob)]
            if net.params:
                parts.append((f"its {net.params / 1e6:.1f}M parameters with gradients and optimizer state", state,
                              "network"))
            if self.cuda:
                device[phase] = [("the training set on the GPU", resident, "data"), (validation, inputs, "validation"),
                                 *parts]
            else:
                host[phase] = [data, (validation, inputs, "validation"), *parts]
        out = {"host": _peak(host)}
        if device:
            out["device"] = _peak(device)
        return out

    def need(self, k: Knobs, place: str) -> int:
        return sum(b for _, b, _ in self.peaks(k)[place]) + PROCESS_BYTES


def _peak(phases: dict[str, list[Part]]) -> list[Part]:
    return max(phases.values(), key=lambda parts: sum(b for _, b, _ in parts))


def check_memory(estimate, data_cfg, eval_cfg, train_settings: dict[str, Any], device, spec=None,
                 available: dict[str, int | None] | None = None) -> None:
    """Refuse (ConfigError) a study whose peak needs more memory than the machine has; see the
    module docstring. `spec` (the SearchSpace or AblationSpec) gives the networks and the timed
    batch; without it the network is counted as its input and output alone. `available`
    ({"host": bytes, "device": bytes}) replaces the probes."""
    cuda = device.type == "cuda"
    if available is None:
        available = {"host": _host_available(), "device": _device_total(device) if cuda else None}
    train_batch = _largest(train_settings.get("batch_size"), 64)
    measure_batch = getattr(getattr(spec, "measure", None), "batch_size", None)
    if hasattr(spec, "variant_configs"):  # an ablation: variants may train with their own batch size
        train_batch = max([train_batch, *(spec.train_config(0, name).batch_size for name in spec.names)])
    network = largest_network(spec, max(train_batch, measure_batch or 0)) if spec is not None else None
    ema = bool(_largest(train_settings.get("ema_decay"), 0) or 0)
    model = _Model(estimate, data_cfg, eval_cfg, network, ema, cuda)
    knobs = Knobs(estimate.image_size, estimate.images, eval_cfg.num_images, train_batch, measure_batch,
                  eval_cfg.batch_size)
    for place, parts in model.peaks(knobs).items():
        need, have = model.need(knobs, place), available.get(place)
        if have is None or need <= have:
            continue
        field, fix = _remedy(model, knobs, place, have, parts, data_cfg)
        where = "this machine has" if place == "host" else f"{device} has"
        what = ", ".join(f"{label} {_gib(b)}" for label, b, _ in parts if b)
        raise ConfigError(field, f"needs ~{_gib(need)} of memory, but {where} {_gib(have)} "
                                 f"{'available' if place == 'host' else 'in all'} ({what}, the process "
                                 f"{_gib(PROCESS_BYTES)}); {fix}")


def _remedy(model: _Model, knobs: Knobs, place: str, have: int, parts: list[Part], data_cfg) -> tuple[str, str]:
    """(the field to lower, what to do): the knob of the part that needs the most (see `_knob`),
    and the largest value of it that fits, when one does."""
    from ..data import count_field

    label, _, part = max(parts, key=lambda p: p[1])
    knob = _knob(part, knobs, label)
    if knob == "network":
        return "architecture", (f"{label} alone do not fit: narrow the widths or levels of the architecture (or "
                                f"search fewer, smaller ones)")
    field = count_field(data_cfg) if knob == "images" else _FIELDS[knob]
    fits = lambda value: model.need(replace(knobs, **{knob: value}), place) <= have  # noqa: E731
    lo, hi = (2 if knob in ("image_size", "images") else 1), getattr(knobs, knob)
    others = [f for f in ("data.image_size", count_field(data_cfg), "eval.num_images", "train.batch_size")
              if f != field]
    if not fits(lo):
        return field, f"lower {field}, and {', '.join(others)} too: even {lo} does not fit"
    while hi - lo > 1:  # the largest value that fits
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return field, f"use {field}: {lo} or less (or lower {', '.join(others)})"


def _knob(part: str, knobs: Knobs, label: str) -> str:
    """The setting a part of the peak is blamed on: its own (the validation images, a batch) when
    it is set above its default, else the image size; a data set, by its image size above
    `_BIG_IMAGES` pixels, else by its count."""
    if part == "data":
        return "image_size" if knobs.image_size > _BIG_IMAGES else "images"
    if part == "validation":
        return "eval_images" if knobs.eval_images > 256 else "image_size"
    defaults = {"train_batch": 64, "measure_batch": knobs.train_batch, "eval_batch": 256}
    if part in defaults:
        return part if (getattr(knobs, part) or 0) > defaults[part] else "image_size"
    return part  # the network: its parameters


def _largest(value, default):
    """A setting's largest value: itself, or its distribution's largest candidate."""
    if value is None:
        return default
    from ..schema.distributions import as_distribution, is_distribution

    if is_distribution(value):
        candidates = [c for c in as_distribution(value).candidates() if isinstance(c, (int, float))]
        return max(candidates) if candidates else default
    return value


def _host_available() -> int | None:
    from ..load import available_memory

    return available_memory()


def _device_total(device) -> int | None:
    from ..device import memory_bytes

    return memory_bytes(device)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / (1 << 20):.0f} MiB"
