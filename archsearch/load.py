"""How busy the machine is while a trial is timed, when it is busier than it has cores for, and
how much memory it has free.

    load = machine_load()                     # {'load_avg': 1.9, 'cpu_count': 2, 'gpu_util': None, 'sm_clock_mhz': None}
    load = machine_load(gpu="0000:3b:00.0")   # + NVML's utilization and SM clock of that GPU
    oversubscription(load["load_avg"], load["cpu_count"])   # None, or a sentence saying why it is
    busy_cpus()                               # 1.0: others kept one of this process's CPUs busy (Linux)
    available_memory()                        # 22.4e9: bytes that can be allocated without swapping, or None

A throughput measured on a machine that other jobs share is the machine's as much as the
model's: on a 2-core VM running two other jobs, one configuration measured 36.6 images/s inside
a study and 226.6 alone. archsearch.measure records these readings with every measurement (they
say *that* a number may be off), and times a reference network interleaved with the candidate
(which says *by how much*, and corrects for it: archsearch.search.speed).

- `load_avg`: the 1-minute load average (`os.getloadavg`): runnable threads, averaged with an
  exponential decay over about a minute, this process's own busy threads included. So a lone
  measurement using all cores already reads about `cpu_count`; well above it, threads wait for
  a core.
- `cpu_count`: the logical CPUs this process may run on (its affinity), not the machine's total.
- `busy_cpus`: how many of this process's CPUs other processes (and the hypervisor: steal
  time) kept busy over a short window, read from /proc/stat while this process sleeps, this
  process's own CPU time excluded; None where there is no /proc/stat. Unlike the load average it
  is now, not a minute ago: archsearch.timing times no more torch threads than are left free.
- `available_memory`: what the kernel estimates can be allocated now without swapping
  (/proc/meminfo's MemAvailable: free memory plus the page cache it can drop), else the free
  physical pages (`SC_AVPHYS_PAGES`); None where neither can be read. What a study checks its
  data, validation set and largest network against before reading anything
  (archsearch.search.preflight).
- `gpu_util`, `sm_clock_mhz`: on CUDA with `pynvml` importable, the share of the last sample
  period (1/6 s to 1 s) in which a kernel ran on the GPU, read as timing starts (others' work,
  or ours of a moment ago), and the SM clock read as it ends (a throttled GPU runs slower);
  None elsewhere.

Imports neither torch nor archsearch: the live display reads it too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

__all__ = ["machine_load", "cpu_count", "busy_cpus", "gpu_readings", "oversubscription", "available_memory"]

PROC_STAT = "/proc/stat"
PROC_MEMINFO = "/proc/meminfo"
BUSY_WINDOW_S = 0.1  # ten clock ticks of a CPU at Linux's 100 Hz accounting


def _cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return set(range(os.cpu_count() or 1))


def cpu_count() -> int:
    """The logical CPUs this process may use."""
    return len(_cpus())


def _cpu_ticks(text: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of the CPUs `cpus` in a /proc/stat text: user nice system idle
    iowait irq softirq steal; idle and iowait are not busy, steal is (a core the hypervisor gave
    to another guest is not ours to use)."""
    busy = total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in rest.split()[:8]]
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy, total


def _read_proc_stat() -> str:
    with open(PROC_STAT) as f:
        return f.read()


def busy_cpus(window: float = BUSY_WINDOW_S, read: Callable[[], str] = _read_proc_stat,
              own_cpu_seconds: Callable[[], float] = time.process_time,
              sleep: Callable[[float], None] = time.sleep, ticks_per_s: float | None = None) -> float | None:
    """How many of this process's CPUs others kept busy over about `window` seconds (see the
    module docstring): the window's busy ticks of those CPUs, less the CPU time this process
    used meanwhile, ÷ the window's length (its ticks ÷ the CPUs); None where /proc/stat cannot be
    read or parsed. `ticks_per_s` defaults to the kernel's USER_HZ."""
    cpus = _cpus()
    try:
        hz = ticks_per_s or os.sysconf("SC_CLK_TCK")
        own0, (busy0, total0) = own_cpu_seconds(), _cpu_ticks(read(), cpus)
        sleep(window)
        own1, (busy1, total1) = own_cpu_seconds(), _cpu_ticks(read(), cpus)
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    elapsed = (total1 - total0) / len(cpus) / hz
    return max(0.0, ((busy1 - busy0) / hz - (own1 - own0)) / elapsed)


def available_memory(meminfo: str = PROC_MEMINFO) -> int | None:
    """Bytes of memory that can be allocated now without swapping (see the module docstring)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value, unit = line.split()[1:3]
                    return int(value) * {"kB": 1024, "mB": 1 << 20, "gB": 1 << 30}.get(unit, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def _load_avg() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # Windows
        return None


def gpu_readings(gpu: str | int | None) -> dict[str, float | None]:
    """NVML's utilization (%) and SM clock (MHz) of a GPU, by PCI bus id or NVML index; Nones
    when there is no GPU, no pynvml, or NVML fails."""
    empty = {"gpu_util": None, "sm_clock_mhz": None}
    if gpu is None:
        return empty
    try:
        import pynvml
    except ImportError:
        return empty
    try:
        pynvml.nvmlInit()
        try:
            handle = (pynvml.nvmlDeviceGetHandleByPciBusId(gpu) if isinstance(gpu, str)
                      else pynvml.nvmlDeviceGetHandleByIndex(gpu))
            util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            clock = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
            return {"gpu_util": float(util), "sm_clock_mhz": float(clock)}
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - a reading that cannot be taken is None, never a failed trial
        return empty


def machine_load(gpu: str | int | None = None) -> dict[str, Any]:
    """The load readings of the module docstring; `gpu` names the CUDA device timed, if any."""
    return {"load_avg": _load_avg(), "cpu_count": cpu_count(), **gpu_readings(gpu)}


def oversubscription(load_avg: float | None, cores: int | None, busy_threads: int | None = None) -> str | None:
    """Why the machine has more busy threads than cores, or None when it does not (or cannot
    tell). `busy_threads` counts the threads this study itself keeps busy (torch threads ×
    trials running here), when known."""
    if not cores:
        return None
    reasons = []
    if load_avg is not None and load_avg > cores + 0.5:  # half a thread of slack: the average lags and rounds
        reasons.append(f"load average {load_avg:.1f} on {cores} core{'s' if cores != 1 else ''}")
    if busy_threads is not None and busy_threads > cores:
        reasons.append(f"this study runs {busy_threads} torch threads on {cores} core{'s' if cores != 1 else ''}")
    if not reasons:
        return None
    return ("machine oversubscribed (" + "; ".join(reasons) + "): throughput measured now is slowed by the load; "
            "see train_throughput_normalized and measured_under_load")
