"""How busy the machine is while a trial is timed, and when it is busier than it has cores for.

    load = machine_load()                     # {'load_avg': 1.9, 'cpu_count': 2, 'gpu_util': None, 'sm_clock_mhz': None}
    load = machine_load(gpu="0000:3b:00.0")   # + NVML's utilization and SM clock of that GPU
    oversubscription(load["load_avg"], load["cpu_count"])   # None, or a sentence saying why it is

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
- `gpu_util`, `sm_clock_mhz`: on CUDA with `pynvml` importable, the share of the last sample
  period (1/6 s to 1 s) in which a kernel ran on the GPU, read as timing starts (others' work,
  or ours of a moment ago), and the SM clock read as it ends (a throttled GPU runs slower);
  None elsewhere.

Imports neither torch nor archsearch: the live display reads it too.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["machine_load", "cpu_count", "gpu_readings", "oversubscription"]


def cpu_count() -> int:
    """The logical CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


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
