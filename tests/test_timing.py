"""The reference-interleaved timing protocol (archsearch.timing, archsearch.measure): the order of
steps, the per-pair ratio, the time cap, what the reference does not change (memory, RNG, the
caller's models), the machine's load readings (archsearch.load), and the fixed-seed reference.
All on a fake clock: nothing here asserts on wall-clock time."""

import math
import sys
import types

import pytest
import torch

from archsearch import load
from archsearch.measure import Reference, measure
from archsearch.schema.measure import MeasureConfig, reference_architecture
from archsearch.timing import (build_reference, choose_threads, median_rel_error, pair_ratios, time_interleaved,
                               time_with_reference, timing_threads)
from test_measure import CPU, TRAIN_ONLY, FakeClock, TinyNet


class Labelled(TinyNet):
    """Logs its label on the fake clock at every forward and advances it by its next duration."""

    def __init__(self, clock, label, durations=(), default=0.001, **kwargs):
        super().__init__(**kwargs)
        self.clock, self.label, self.durations, self.default = clock, label, list(durations), default

    def forward(self, x, t, class_labels=None):
        self.clock.log.append(self.label)
        self.clock.now += self.durations.pop(0) if self.durations else self.default
        return super().forward(x, t, class_labels)

    def __deepcopy__(self, memo):
        # The copy measured must log to the same clock and share the durations left.
        twin = Labelled(self.clock, self.label, channels=self.conv_in.in_channels, width=self.conv_in.out_channels)
        twin.durations, twin.default = self.durations, self.default
        twin.load_state_dict(self.state_dict())
        return twin


def timed(log):
    """The labels of the timed steps in a fake clock's log: sync, clock, step, sync."""
    return [log[i] for i in range(2, len(log) - 1) if log[i - 2:i] == ["S", "T"] and log[i] not in "ST"
            and log[i + 1] == "S"]


@pytest.fixture
def two_threads():
    """torch at two threads for the test (the suite runs at one), set back after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_interleaved_rounds_call_each_step_in_turn():
    clock = FakeClock()
    steps = [lambda: clock.log.append("R"), lambda: clock.log.append("C")]
    durations = time_interleaved(steps, warmup=1, repeats=3, timer=clock.timer, sync=clock.sync)
    assert clock.log == ["R", "C"] + ["S", "T", "R", "S", "T", "S", "T", "C", "S", "T"] * 3
    assert [len(d) for d in durations] == [3, 3]


def test_measure_times_reference_then_candidate_after_equal_warm_up():
    clock = FakeClock()
    cfg = MeasureConfig(warmup_steps=2, repeats=3, **TRAIN_ONLY)
    candidate, reference = Labelled(clock, "C"), Labelled(clock, "R")
    m = measure(candidate, (3, 8, 8), 8, CPU, cfg, timer=clock.timer, sync=clock.sync, reference=Reference(reference))
    # The memory proxy's candidate step first (alone), the reference's first step to match, one
    # shared untimed round, then three timed pairs: reference, candidate, reference, candidate ...
    assert [e for e in clock.log if e in "RC"][:4] == ["C", "R", "R", "C"]
    assert timed(clock.log) == ["R", "C"] * 3
    assert m.train_steps == 3 and m.ref_throughput is not None and m.ref_step_ms == pytest.approx(1.0)


def test_the_ratio_is_the_median_of_per_pair_ratios():
    # Pairs (reference s, candidate s): (1, 2), (4, 8), (2, 1). Each of the first two says the
    # candidate runs at half the reference's speed; the third was hit by a burst on the
    # reference's side. The per-pair median says 0.5; a ratio of medians (2 / 2) would say 1.
    clock = FakeClock()
    cfg = MeasureConfig(warmup_steps=0, repeats=3, ratio_tolerance=None, **TRAIN_ONLY)  # exactly three pairs
    candidate = Labelled(clock, "C", durations=[0.5, 2, 8, 1])  # the proxy's untimed step first
    reference = Labelled(clock, "R", durations=[0.5, 1, 4, 2])  # and the reference's to match
    m = measure(candidate, (3, 4, 4), 4, CPU, cfg, timer=clock.timer, sync=clock.sync, reference=Reference(reference))
    assert m.train_speed_vs_ref == pytest.approx(0.5)
    assert m.train_throughput == pytest.approx(4 / 2) and m.ref_throughput == pytest.approx(4 / 2)


def test_median_rel_error_by_hand():
    # [1, 2, 3, 4, 5]: median 3, inclusive quartiles 2 and 4, IQR 2, σ ≈ 2 / 1.349; the median's
    # standard error 1.2533 σ / √5, relative to 3.
    assert median_rel_error([5, 1, 4, 2, 3]) == pytest.approx(1.2533 * 2 / 1.349 / math.sqrt(5) / 3)
    assert median_rel_error([2.0] * 7) == 0.0
    assert median_rel_error([1.0, 2.0]) == math.inf and median_rel_error([0.0, 0.0, 0.0]) == math.inf
    assert pair_ratios([1, 4], [2, 2]) == [0.5, 2.0]


def test_more_rounds_only_while_asked_and_never_past_max_repeats_or_the_deadline():
    clock = FakeClock()
    asked = []

    def more(durations):
        asked.append(len(durations[0]))
        return len(durations[0]) < 5

    steps = [lambda: clock.log.append("R"), lambda: clock.log.append("C")]
    durations = time_interleaved(steps, warmup=0, repeats=3, timer=clock.timer, sync=clock.sync, more=more, max_repeats=8)
    assert [len(d) for d in durations] == [5, 5] and asked == [3, 4, 5]  # asked from the third round on
    assert len(time_interleaved(steps, 0, 3, clock.timer, clock.sync, more=lambda d: True, max_repeats=6)[0]) == 6
    assert len(time_interleaved(steps, 0, 3, clock.timer, clock.sync, more=lambda d: True, max_repeats=None)[0]) == 3
    assert len(time_interleaved(steps, 0, 4, clock.timer, clock.sync, more=lambda d: True, max_repeats=2)[0]) == 4


def _pairs_taken(ref_times, cand_times, **cfg_fields):
    clock = FakeClock()
    cfg = MeasureConfig(warmup_steps=0, **{**TRAIN_ONLY, **cfg_fields})
    # the memory proxy's untimed candidate step first, and the reference's to match
    candidate = Labelled(clock, "C", durations=[1.0] + list(cand_times), default=1.0)
    reference = Labelled(clock, "R", durations=[1.0] + list(ref_times), default=1.0)
    m = measure(candidate, (3, 4, 4), 4, CPU, cfg, timer=clock.timer, sync=clock.sync, reference=Reference(reference))
    assert timed(clock.log) == ["R", "C"] * m.train_steps
    return m


def test_steady_pairs_stop_at_repeats():
    m = _pairs_taken([1.0] * 20, [2.0] * 20, repeats=4, max_repeats=20, ratio_tolerance=0.05)
    assert m.train_steps == 4 and m.train_speed_vs_ref == pytest.approx(0.5)


def test_scattered_pairs_go_on_until_the_ratio_is_precise_enough():
    # Ratios 0.5, 1, 2 and then 1 again and again: the median's relative error falls with every
    # steady pair; timing stops at the first pair count where it is at most 5%.
    ref = [1.0, 1.0, 2.0] + [1.0] * 40
    cand = [2.0, 1.0, 1.0] + [1.0] * 40
    ratios = [r / c for r, c in zip(ref, cand)]
    expected = next(n for n in range(3, 44) if median_rel_error(ratios[:n]) <= 0.05)
    assert expected > 3
    m = _pairs_taken(ref, cand, repeats=3, max_repeats=40, ratio_tolerance=0.05)
    assert m.train_steps == expected and m.train_speed_vs_ref == pytest.approx(1.0)


def test_pairs_that_never_settle_stop_at_max_repeats_or_the_time_cap():
    ref = [1.0, 3.0] * 30
    cand = [3.0, 1.0] * 30  # ratios 1/3 and 3 in turn: never precise
    assert _pairs_taken(ref, cand, repeats=3, max_repeats=12, ratio_tolerance=0.05).train_steps == 12
    assert _pairs_taken(ref, cand, repeats=3, max_repeats=None, ratio_tolerance=0.05).train_steps == 3
    assert _pairs_taken(ref, cand, repeats=3, max_repeats=12, ratio_tolerance=None).train_steps == 3
    # four seconds a pair: after the 1 + 1 untimed seconds, pair k ends at 2 + 4k; a 30 s cap
    # takes the seventh (ending at 30) and not the eighth (34)
    assert _pairs_taken(ref, cand, repeats=3, max_repeats=12, ratio_tolerance=0.05, max_seconds=30).train_steps == 7


def test_without_a_reference_the_training_phase_is_as_before():
    clock = FakeClock()
    m = measure(Labelled(clock, "C"), (3, 4, 4), 2, CPU, MeasureConfig(warmup_steps=2, repeats=3, **TRAIN_ONLY),
                timer=clock.timer, sync=clock.sync)
    assert clock.log == ["C", "C"] + ["S", "T", "C", "S", "T"] * 3
    assert (m.ref_throughput, m.train_speed_vs_ref, m.ref_step_ms) == (None, None, None)
    assert m.cpu_count >= 1 and m.gpu_util is None and m.sm_clock_mhz is None  # the load is read all the same


@pytest.mark.parametrize("max_seconds, pairs", [(0.5, 3), (9.5, 3), (10.5, 4), (None, 10)])
def test_max_seconds_caps_the_pairs_but_keeps_three(max_seconds, pairs):
    # One second per step, two per pair; the untimed steps end at 2, pair k at 2 + 2k. A pair is
    # skipped when it would end past the cap, but three are always taken.
    clock = FakeClock()
    cfg = MeasureConfig(warmup_steps=1, repeats=10, max_seconds=max_seconds, infer=False, latency=False, flops=False)
    m = measure(Labelled(clock, "C", default=1.0), (3, 4, 4), 2, CPU, cfg, timer=clock.timer, sync=clock.sync,
                reference=Reference(Labelled(clock, "R", default=1.0)))
    assert m.train_steps == pairs and timed(clock.log) == ["R", "C"] * pairs


def test_the_reference_changes_neither_memory_nor_the_callers_models_nor_the_rng():
    model, ref = TinyNet(width=16), TinyNet(width=4)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (model, ref)]
    rng = torch.get_rng_state()
    cfg = MeasureConfig(warmup_steps=1, repeats=3, **TRAIN_ONLY)
    alone = measure(model, (3, 8, 8), 4, CPU, cfg)
    against = measure(model, (3, 8, 8), 4, CPU, cfg, reference=Reference(ref))
    assert against.peak_mem_mb == alone.peak_mem_mb  # the candidate's step alone, before the reference is copied
    for saved, m in zip(before, (model, ref)):
        assert all(torch.equal(saved[k], v) for k, v in m.state_dict().items())
        assert all(p.grad is None for p in m.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_time_with_reference_gives_every_model_a_round_in_turn(monkeypatch, two_threads):
    monkeypatch.setattr("archsearch.timing.cpu_count", lambda: 2)
    clock = FakeClock()
    models = [Labelled(clock, "A"), Labelled(clock, "B")]
    reference = Reference(Labelled(clock, "R", default=0.002))
    cfg = MeasureConfig(warmup_steps=1, repeats=3, **TRAIN_ONLY)
    readings = iter([0.0, 1.0, 0.0, 1.0])  # the CPUs others keep busy before each model's round
    out = time_with_reference(models, reference, (3, 4, 4), 2, CPU, cfg, rounds=2, timer=clock.timer, sync=clock.sync,
                              busy=lambda: next(readings))
    assert [len(rounds) for rounds in out] == [2, 2]
    assert timed(clock.log) == (["R", "A"] * 3 + ["R", "B"] * 3) * 2  # round 1: A then B; round 2 again
    assert all(r["train_speed_vs_ref"] == pytest.approx(2.0) for rounds in out for r in rounds)
    # each model's round reads the load and times with the threads left free
    assert [r["threads"] for r in out[0]] == [2, 2] and [r["threads"] for r in out[1]] == [1, 1]
    assert [r["busy_cpus"] for r in out[1]] == [1.0, 1.0]


def test_the_reference_is_built_from_a_fixed_seed_without_touching_the_callers_rng():
    config = reference_architecture(MeasureConfig(), 16, 1)
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    a, b = build_reference(config), build_reference(config)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert a.num_classes is None and next(a.model.parameters()).device.type == "cpu"


def test_a_process_builds_its_reference_once():
    from archsearch.schema.loading import unet_config_from_dict
    from archsearch.trial import TrialContext

    context = TrialContext(data=None, device=torch.device("cpu"), protocol=None)
    config = unet_config_from_dict({"image_size": 8, "in_channels": 1, "levels": [{"width": 8}], "block": {"norm": {"groups": 4}}})
    first = context.reference(MeasureConfig(), config)
    assert context.reference(MeasureConfig(), config) is first and first.name == "auto"
    assert context.reference(MeasureConfig(reference=None), config) is None
    assert context.reference(MeasureConfig(reference="seed"), config) is not first


# --- how many threads time a step -----------------------------------------------------------

CUDA = torch.device("cuda")


@pytest.mark.parametrize("setting, device, current, usable, busy, threads", [
    ("auto", CPU.device, 2, 2, 0.04, 2),     # idle: all of them
    ("auto", CPU.device, 2, 2, 1.0, 1),      # one core busy: the one left
    ("auto", CPU.device, 2, 2, 2.0, 1),      # every core busy: never below one
    ("auto", CPU.device, 8, 16, 3.6, 8),     # more free than this process uses: its own
    ("auto", CPU.device, 16, 16, 3.6, 12),   # to the nearest whole CPU
    ("auto", CPU.device, 16, 16, 3.4, 13),
    ("auto", CPU.device, 2, 2, None, 2),     # no /proc/stat: as the process is
    ("auto", CUDA, 4, 4, 3.0, 4),            # the GPU's speed: threads only launch it
    (None, CPU.device, 2, 2, 2.0, 2),        # off: the process's threads
    (3, CPU.device, 2, 2, 2.0, 3),           # a number: exactly it
    (3, CUDA, 2, 2, None, 3),
])
def test_choose_threads(monkeypatch, setting, device, current, usable, busy, threads):
    monkeypatch.setattr("archsearch.timing.cpu_count", lambda: usable)
    asked = []

    def reading():
        asked.append(1)
        return busy

    choice = choose_threads(setting, device, current, reading)
    assert choice.threads == threads
    read = setting == "auto" and device.type == "cpu"
    assert asked == ([1] if read else []) and choice.busy_cpus == (busy if read else None)


def test_auto_threads_with_one_thread_reads_nothing():
    assert choose_threads("auto", CPU.device, 1, lambda: pytest.fail("read the load")).threads == 1


def test_timing_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    with timing_threads(before + 1, CPU.device) as choice:
        assert torch.get_num_threads() == choice.threads == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), timing_threads(before + 1, CPU.device):
        raise RuntimeError("a failed step")
    assert torch.get_num_threads() == before


def test_measure_records_its_threads_and_the_load_it_read(monkeypatch, two_threads):
    monkeypatch.setattr("archsearch.timing.cpu_count", lambda: 3)
    seen = []
    net = TinyNet()
    net.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))  # the copies keep it
    cfg = MeasureConfig(warmup_steps=1, repeats=3, threads="auto", **TRAIN_ONLY)
    m = measure(net, (3, 8, 8), 4, CPU, cfg, busy=lambda: 2.0)  # three CPUs, two busy: one thread
    assert m.threads == 1 and m.busy_cpus == 2.0 and set(seen) == {1} and torch.get_num_threads() == 2
    seen.clear()
    m = measure(net, (3, 8, 8), 4, CPU, cfg.model_copy(update={"threads": None}), busy=lambda: pytest.fail("read"))
    assert m.threads == 2 and m.busy_cpus is None and set(seen) == {2}


PROC_STAT = """cpu  {a} 0 {b} {c} 0 0 0 0 0 0
cpu0 {a0} 0 0 {i0} 5 0 0 {s0} 0 0
cpu1 {a1} 0 0 {i1} 0 0 0 0 0 0
cpu2 1000 0 0 0 0 0 0 0 0 0
intr 1 2 3
"""


def test_busy_cpus_from_proc_stat(monkeypatch):
    monkeypatch.setattr(load, "_cpus", lambda: {0, 1})  # cpu2 is someone else's: not counted
    texts = iter([PROC_STAT.format(a=0, b=0, c=0, a0=100, i0=100, s0=0, a1=100, i1=100),
                  # 0.1 s at 100 ticks/s: cpu0 10 ticks busy (8 user, 2 stolen by the hypervisor), cpu1 idle
                  PROC_STAT.format(a=0, b=0, c=0, a0=108, i0=100, s0=2, a1=100, i1=110)])
    own = iter([1.0, 1.03])  # this process used 0.03 CPU-seconds meanwhile: 0.3 of a CPU
    slept = []
    busy = load.busy_cpus(0.1, read=lambda: next(texts), own_cpu_seconds=lambda: next(own), sleep=slept.append,
                          ticks_per_s=100)
    assert slept == [0.1] and busy == pytest.approx(1.0 - 0.3)


@pytest.mark.parametrize("text", ["", "cpu0 x y z\n", "no cpus here\n"])
def test_busy_cpus_is_none_when_proc_stat_says_nothing(monkeypatch, text):
    monkeypatch.setattr(load, "_cpus", lambda: {0})
    assert load.busy_cpus(0.1, read=lambda: text, sleep=lambda s: None) is None


def test_busy_cpus_is_none_without_proc_stat():
    def missing():
        raise FileNotFoundError("/proc/stat")

    assert load.busy_cpus(0.1, read=missing, sleep=lambda s: None) is None


def test_busy_cpus_reads_this_machine():
    busy = load.busy_cpus(0.02)
    assert busy is None or 0 <= busy <= load.cpu_count()


# --- the machine's load ----------------------------------------------------------------------

def test_load_readings_on_the_cpu():
    reading = load.machine_load()
    assert reading["cpu_count"] >= 1 and reading["gpu_util"] is None and reading["sm_clock_mhz"] is None
    assert reading["load_avg"] is None or reading["load_avg"] >= 0


class FakeNVML(types.SimpleNamespace):
    NVML_CLOCK_SM = 1

    def __init__(self, fail=False):
        super().__init__(calls=[])
        self.fail = fail

    def nvmlInit(self):
        if self.fail:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        self.calls.append(bus)
        return "handle"

    def nvmlDeviceGetHandleByIndex(self, index):
        self.calls.append(index)
        return "handle"

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=37)

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return 1755 if kind == self.NVML_CLOCK_SM else 0


def test_gpu_readings_through_nvml_and_none_when_it_fails(monkeypatch):
    nvml = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert load.gpu_readings("00000000:3B:00.0") == {"gpu_util": 37.0, "sm_clock_mhz": 1755.0}
    assert nvml.calls == ["00000000:3B:00.0", "shutdown"]
    assert load.gpu_readings(None) == {"gpu_util": None, "sm_clock_mhz": None}  # not timing a GPU
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(fail=True))
    assert load.gpu_readings(0) == {"gpu_util": None, "sm_clock_mhz": None}


@pytest.mark.parametrize("load_avg, cores, busy, words", [
    (1.9, 2, None, None),            # a lone measurement on both cores: busy, not oversubscribed
    (2.4, 2, 2, None),               # within the half thread of slack
    (5.2, 2, None, "load average 5.2 on 2 cores"),
    (0.5, 2, 4, "this study runs 4 torch threads on 2 cores"),
    (None, 2, None, None),           # no load average (Windows): cannot tell
    (9.0, None, None, None),
])
def test_oversubscription(load_avg, cores, busy, words):
    message = load.oversubscription(load_avg, cores, busy)
    assert (message is None) == (words is None)
    if words:
        assert words in message and "oversubscribed" in message
