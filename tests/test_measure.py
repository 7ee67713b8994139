"""The cost measurement: timing protocol, FLOPs, parameters, memory proxy, devices, OOM."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from archsearch import device as dev
from archsearch.errors import ConfigError
from archsearch.measure import MeasurementOOM, count_flops, count_params, measure, time_repeats
from archsearch.schema.measure import MeasureConfig
from archsearch.schema.train import TrainConfig
from archsearch.settings import resolve_run_settings

# Only the training-throughput phase, no cap: the protocol tests look at one phase at a time.
CPU = resolve_run_settings(TrainConfig(), "cpu")  # eager fp32, unfused AdamW
TRAIN_ONLY = dict(infer=False, latency=False, flops=False, max_seconds=None)


class TinyNet(torch.nn.Module):
    """The denoiser interface in miniature: conv, timestep and label embedding, conv."""

    def __init__(self, channels=3, width=8, num_classes=None):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.t_emb = torch.nn.Linear(1, width)
        self.label_emb = torch.nn.Embedding(num_classes, width) if num_classes else None
        self.conv_out = torch.nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, t, class_labels=None):
        emb = self.t_emb(t[:, None] / 1000)  # (B, W)
        if class_labels is not None:
            emb = emb + self.label_emb(class_labels)
        return self.conv_out(F.silu(self.conv_in(x) + emb[:, :, None, None]))


class FakeClock:
    """A timer and a sync that log their calls; each forward pass advances time."""

    def __init__(self, durations=(), default=0.001):
        self.now, self.log = 0.0, []
        self.durations, self.default = list(durations), default

    def timer(self):
        self.log.append("T")
        return self.now

    def sync(self):
        self.log.append("S")

    def forward_happened(self):
        self.log.append("F")
        self.now += self.durations.pop(0) if self.durations else self.default


class ClockedNet(TinyNet):
    def __init__(self, clock, **kwargs):
        super().__init__(**kwargs)
        self.clock = clock

    def forward(self, x, t, class_labels=None):
        self.clock.forward_happened()
        return super().forward(x, t, class_labels)

    def __deepcopy__(self, memo):
        # The copy measured must still tick the same clock (a deep copy would clone it).
        twin = ClockedNet(self.clock, channels=self.conv_in.in_channels, width=self.conv_in.out_channels)
        twin.load_state_dict(self.state_dict())
        return twin


def test_time_repeats_protocol():
    clock = FakeClock()
    durations = time_repeats(clock.forward_happened, warmup=2, repeats=3, timer=clock.timer, sync=clock.sync)
    # Warm-up is neither synchronized nor timed; each timed step is sync, clock, step, sync, clock.
    assert clock.log == ["F", "F"] + ["S", "T", "F", "S", "T"] * 3
    assert durations == pytest.approx([0.001] * 3)


def test_train_throughput_is_median_of_timed_steps_only():
    # Three slow warm-up steps must not show; the 100 ms outlier must not move the median.
    clock = FakeClock(durations=[1.0, 1.0, 1.0, 0.001, 0.002, 0.003, 0.004, 0.100])
    cfg = MeasureConfig(warmup_steps=3, repeats=5, **TRAIN_ONLY)
    m = measure(ClockedNet(clock), (3, 8, 8), 8, CPU, cfg, timer=clock.timer, sync=clock.sync)
    assert clock.log == ["F"] * 3 + ["S", "T", "F", "S", "T"] * 5
    assert m.train_steps == 5
    assert m.train_step_ms == pytest.approx(3.0)
    assert m.train_throughput == pytest.approx(8 / 0.003)
    # Per-step images/s sorted: 80, 2000, 2667, 4000, 8000 -> q75 - q25 = 4000 - 2000.
    assert m.train_throughput_iqr == pytest.approx(8 / 0.002 - 8 / 0.004)


def test_infer_and_latency_phases():
    clock = FakeClock(default=0.002)
    cfg = MeasureConfig(warmup_steps=2, repeats=4, latency_repeats=3, flops=False, max_seconds=None)
    m = measure(ClockedNet(clock), (3, 8, 8), 16, CPU, cfg, timer=clock.timer, sync=clock.sync)
    assert (m.train_steps, m.infer_steps, m.latency_steps) == (4, 4, 3)
    assert m.infer_throughput == pytest.approx(16 / 0.002)
    assert m.latency_ms == pytest.approx(2.0)
    # train: 2 warm-up + 4 timed; infer: 2 + 4; latency: 2 + 3 forwards.
    assert clock.log.count("F") == 6 + 6 + 5
    assert clock.log.count("T") == 2 * (4 + 4 + 3)


@pytest.mark.parametrize("max_seconds, steps", [(0.5, 3), (4.5, 3), (6.5, 5), (None, 10)])
def test_max_seconds_caps_repeats_but_keeps_three(max_seconds, steps):
    # One second per step; the phase starts at 0 and warm-up ends at 1. A step is skipped when
    # it would end past the cap, but three are always taken.
    clock = FakeClock(default=1.0)
    cfg = MeasureConfig(warmup_steps=1, repeats=10, infer=False, latency=False, flops=False,
                        max_seconds=max_seconds)
    m = measure(ClockedNet(clock), (3, 4, 4), 2, CPU, cfg, timer=clock.timer, sync=clock.sync)
    assert m.train_steps == steps
    assert clock.log.count("F") == 1 + steps


def test_callers_model_and_rng_are_untouched():
    model = TinyNet(num_classes=5).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    m = measure(model, (3, 8, 8), 4, CPU, MeasureConfig(warmup_steps=1, repeats=3, latency_repeats=3),
                num_classes=5)
    assert m.train_steps == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_inputs_follow_the_model_interface():
    seen = []

    class Checking(TinyNet):
        def forward(self, x, t, class_labels=None):
            seen.append((x.shape, t.dtype, float(t.min()), float(t.max()), class_labels))
            return super().forward(x, t, class_labels)

    measure(Checking(num_classes=7), (3, 8, 8), 4, CPU,
            MeasureConfig(warmup_steps=0, repeats=3, infer=False, flops=False), num_classes=7)
    for shape, t_dtype, t_min, t_max, labels in seen:
        assert shape[1:] == (3, 8, 8) and shape[0] in (1, 4)
        assert t_dtype == torch.float32 and 0 <= t_min and t_max < 1000
        assert labels.dtype == torch.int64 and labels.shape == (shape[0],) and labels.max() < 7


def test_params_is_sum_of_numel():
    model = TinyNet(channels=3, width=8)
    # conv_in 3*8*9+8, t_emb 1*8+8, conv_out 8*3*9+3
    assert count_params(model) == 224 + 16 + 219
    m = measure(model, (3, 4, 4), 2, CPU, MeasureConfig(warmup_steps=0, repeats=3, **TRAIN_ONLY))
    assert m.params == 459


class OneConv(torch.nn.Module):
    def __init__(self, c_in=4, c_out=8, k=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(c_in, c_out, k, padding=k // 2)

    def forward(self, x, t, class_labels=None):
        return self.conv(x)


def test_flops_of_one_conv_by_hand():
    # A multiply-add is 2 FLOPs: 2 * Cin * Cout * k * k * H * W per image, batch size aside.
    expected = 2 * 4 * 8 * 3 * 3 * 12 * 10
    assert count_flops(OneConv(), (4, 12, 10)) == expected
    cfg = MeasureConfig(warmup_steps=0, repeats=3, infer=False, latency=False, flops=True)
    assert measure(OneConv(), (4, 12, 10), 16, CPU, cfg).flops == expected


class ConvAttention(torch.nn.Module):
    """A conv then self-attention over pixels; `needs_real` uses `.item()`, which 'meta' lacks."""

    def __init__(self, needs_real=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 1)
        self.needs_real = needs_real

    def forward(self, x, t, class_labels=None):
        h = self.conv(x)  # (B, 8, H, W)
        if self.needs_real and t.max().item() < 0:
            h = -h
        q = h.flatten(2).transpose(1, 2)[:, None]  # (B, 1, HW, 8)
        return F.scaled_dot_product_attention(q, q, q)


@pytest.mark.parametrize("needs_real", [False, True], ids=["meta", "real-cpu"])
def test_flops_count_attention_on_meta_and_on_cpu(needs_real):
    hw, d = 6 * 6, 8
    conv = 2 * 4 * 8 * hw
    attention = 2 * (2 * hw * hw * d)  # q @ k^T and attn @ v
    assert count_flops(ConvAttention(needs_real), (4, 6, 6)) == conv + attention


def test_cpu_memory_proxy_exceeds_weights_and_grows_with_batch():
    model = TinyNet(width=16)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    cfg = MeasureConfig(warmup_steps=0, repeats=3, **TRAIN_ONLY)
    small, large = (measure(model, (3, 16, 16), b, CPU, cfg) for b in (2, 16))
    assert small.peak_mem_source == "cpu_proxy"
    # weights + grads + two AdamW moments, plus the activations saved for backward
    assert small.peak_mem_mb * 2**20 > 4 * weights
    assert large.peak_mem_mb > small.peak_mem_mb


def test_measurement_record_is_json_ready():
    m = measure(TinyNet(), (3, 4, 4), 2, CPU, MeasureConfig(warmup_steps=0, repeats=3, latency_repeats=3))
    record = json.loads(json.dumps(m.to_dict()))
    assert record["precision"] == "fp32" and record["threads"] == torch.get_num_threads()
    assert record["device"]["type"] == "cpu" and record["batch_size"] == 2
    assert all(math.isfinite(record[k]) and record[k] > 0
               for k in ("train_throughput", "infer_throughput", "latency_ms", "flops", "peak_mem_mb"))


def test_cfg_batch_size_overrides_training_batch_size():
    m = measure(TinyNet(), (3, 4, 4), 32, CPU, MeasureConfig(batch_size=3, repeats=3, **TRAIN_ONLY))
    assert m.batch_size == 3


def test_bf16_on_cpu_runs_under_autocast():
    bf16 = resolve_run_settings(TrainConfig(precision="bf16"), "cpu")
    m = measure(OneConv(), (4, 4, 4), 2, bf16, MeasureConfig(warmup_steps=0, repeats=3, **TRAIN_ONLY))
    assert m.precision == "bf16" and m.train_throughput > 0


@pytest.mark.parametrize("error, phase", [
    (lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB"), "train"),
    (lambda: RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory"), "train"),
])
def test_out_of_memory_becomes_measurement_oom(error, phase):
    class Exploding(TinyNet):
        def forward(self, x, t, class_labels=None):
            raise error()

    model = Exploding()
    rng = torch.get_rng_state()
    with pytest.raises(MeasurementOOM) as info:
        measure(model, (3, 4, 4), 8, CPU, MeasureConfig(repeats=3))
    assert info.value.phase == phase and info.value.batch_size == 8
    assert "batch size 8" in str(info.value)
    assert torch.equal(torch.get_rng_state(), rng)


def test_other_errors_propagate_unchanged():
    class Broken(TinyNet):
        def forward(self, x, t, class_labels=None):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        measure(Broken(), (3, 4, 4), 2, CPU, MeasureConfig(repeats=3))


# --- devices -------------------------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_resolve_device_cpu_and_auto_without_cuda(no_cuda):
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec, fragment", [
    ("cuda", "CUDA is not available"),
    ("cuda:0", "CUDA is not available"),
    ("tpu", "unknown device"),
    ("cpu:1", "takes no index"),
])
def test_resolve_device_errors(no_cuda, spec, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        dev.resolve_device(spec)
    assert info.value.path == "device"


def test_resolve_device_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dev.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        dev.resolve_device("cuda:2", path="train.device")


def test_device_info_on_cpu():
    info = dev.device_info(torch.device("cpu"))
    assert {"type", "name", "torch", "threads"} <= info.keys()
    assert info["name"] and info["torch"] == torch.__version__
    assert info["threads"] == torch.get_num_threads()


def test_precision_helpers(no_cuda):
    cpu = torch.device("cpu")
    assert dev.resolve_precision(cpu, "auto") == "fp32"
    assert dev.resolve_precision(cpu, "bf16") == "bf16"
    with pytest.raises(ConfigError, match="unknown precision"):
        dev.resolve_precision(cpu, "fp8")
    with dev.autocast_context(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with dev.autocast_context(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu")
    dev.configure_backends(cpu)  # a no-op on CPU
    dev.synchronize(cpu)


def test_measure_config_rejects_too_few_repeats_and_unknown_keys():
    with pytest.raises(ValueError, match="repeats"):
        MeasureConfig(repeats=2)
    with pytest.raises(ValueError, match="warmup"):
        MeasureConfig(warmups=3)
