"""Where torch runs: device selection, what to record about it, and per-device settings.

Only training and measurement know the device; they share these helpers so that a trial's
throughput is always recorded with the machine it was measured on:

    device = resolve_device("auto")          # cuda if available, else cpu
    configure_backends(device)               # TF32 + cuDNN autotuning on CUDA
    with autocast_context(device, "bf16"):   # bf16 autocast on CUDA; fp32 stays eager
        out = model(x, t)
    synchronize(device)                      # wait for queued kernels before reading a clock
    info = device_info(device)               # name, torch/cuda/cudnn versions, threads
    memory_bytes(device)                     # what it can hold: GPU memory, or the machine's RAM
    is_out_of_memory(exc)                    # torch's OOM, or a RuntimeError that says the same
"""

from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

from archsearch.errors import ConfigError, excerpt

__all__ = [
    "PRECISIONS",
    "autocast_context",
    "configure_backends",
    "cpu_name",
    "device_info",
    "is_out_of_memory",
    "memory_bytes",
    "resolve_device",
    "resolve_precision",
    "synchronize",
]

PRECISIONS = ("fp32", "bf16")

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def resolve_device(spec: str | torch.device = "auto", path: str = "device") -> torch.device:
    """Turn `auto`, `cpu`, `cuda` or `cuda:N` into a torch.device that exists on this machine.

    `auto` picks the current CUDA device when one is available, else the CPU. A CUDA device that
    is not there is a ConfigError located at `path`, not a failure deep inside the first kernel.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    match = _DEVICE_RE.match(spec.strip().lower())
    if match is None:
        raise ConfigError(path, f"unknown device {excerpt(spec)}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    kind, index = match.group(1), match.group(2)
    if kind in ("auto", "cpu") and index is not None:
        raise ConfigError(path, f"{excerpt(kind)} takes no index; use 'cuda:{index}' for a GPU")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            path,
            f"{excerpt(spec)} requested but CUDA is not available (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}); use 'cpu' or 'auto'",
        )
    count = torch.cuda.device_count()
    if index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if int(index) >= count:
        raise ConfigError(path, f"{excerpt(spec)} does not exist: this machine has {count} CUDA "
                                f"device(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", int(index))


def resolve_precision(device: torch.device, precision: str = "auto", path: str = "precision") -> str:
    """`auto` -> `bf16` on a CUDA device that supports it, `fp32` otherwise; checks the name.

    CPU stays fp32 by default: CPU bf16 autocast is slower than fp32 eager on most CPUs.
    An explicit `bf16` on CPU is honoured (CPU autocast), since the user asked for it.
    """
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(path, f"unknown precision {excerpt(precision)}; use one of "
                                f"{', '.join(PRECISIONS)} or 'auto'")
    return precision


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: bf16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ConfigError("precision", f"unknown precision {excerpt(precision)}; use one of {', '.join(PRECISIONS)}")


def configure_backends(device: torch.device) -> None:
    """Per-device speed settings: TF32 matmuls and convolutions and cuDNN autotuning on CUDA.

    TF32 keeps fp32's range with a 10-bit mantissa, which does not change what a short search
    run learns and is up to several times faster on Ampere and later. cuDNN autotuning picks the
    fastest convolution algorithm for each (fixed) shape during the first steps, which is why
    measurement warms up before timing. A no-op on CPU. Process-wide, like all torch backends
    flags.
    """
    if device.type != "cuda":
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "conv"):
        # torch >= 2.9 API; mixing it with the legacy allow_tf32 flags is an error.
        matmul.fp32_precision = "tf32"
        conv.conv.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = True
        conv.allow_tf32 = True
    conv.benchmark = True


def synchronize(device: torch.device) -> None:
    """Wait until every kernel queued on `device` has finished (a no-op on CPU, which is eager)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_bytes(device: torch.device) -> int | None:
    """The most a device can hold: a CUDA device's total memory, the CPU's physical RAM; None when
    the system does not say."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


# How allocators word out-of-memory when they raise a plain RuntimeError: older CUDA builds,
# and the CPU allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ...").
_OOM_WORDS = ("out of memory", "can't allocate memory", "DefaultCPUAllocator")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError and for a RuntimeError an allocator raised for want of memory."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(words in str(exc) for words in _OOM_WORDS)


def cpu_name() -> str:
    """The CPU model as the OS reports it (`AMD EPYC 7763 64-Core Processor`), or a fallback."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_info(device: torch.device) -> dict:
    """What to record next to every measurement so that numbers from two machines never mix.

    Keys: `type` (cpu/cuda), `name`, `torch`, `threads` (torch intra-op threads), and on CUDA
    `index`, `cuda`, `cudnn`, `capability` and `memory_gb`.
    """
    info: dict = {
        "type": device.type,
        "name": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(
            index=index,
            name=torch.cuda.get_device_name(index),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            capability=f"{props.major}.{props.minor}",
            memory_gb=round(props.total_memory / 2**30, 1),
        )
    return info
