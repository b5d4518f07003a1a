"""The device rule of every entry point (`xmr train`, `xmr eval`, `xmr index build`, `xmr serve`):
the `--device` flag, else the XMR_DEVICE environment variable, else `auto`; resolved by
`resolve_device`, which refuses a device torch cannot use before any work starts.

Beside it, the names of the runtimes that may run queries on that device (`Runtime`; what each
is: models.inference).

torch is imported when a device is resolved, not with this module: the settings and command
lines of the index and service layers read `PATTERN`, `HELP` and `RUNTIMES` without loading
torch."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

ENV = "XMR_DEVICE"
PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"  # auto: cuda when torch sees a CUDA device, else cpu
HELP = "auto, cpu, cuda or cuda:N (XMR_DEVICE; default auto: cuda when present)"  # --device
Runtime = Literal["torch", "onnx", "onnx-int8", "onnx-int8-static"]  # XMR_ENCODER_RUNTIME
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)


def device_setting(flag: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """What the user asked for: the flag, else XMR_DEVICE, else auto (read at the edge; the
    service and the index build read XMR_DEVICE through their pydantic settings)."""
    return flag or environ.get(ENV) or "auto"


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` -> cuda when torch sees a CUDA device, else cpu; cpu, cuda and cuda:N as given,
    refused when torch has no such CUDA device (a clear error at start-up, not a failure
    later)."""
    import torch

    if isinstance(device, torch.device):
        return device
    if not re.match(PATTERN, device):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type != "cuda":
        return chosen
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device "
                         "(a CPU build of torch, or no driver); use auto or cpu")
    if chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} asked for, but torch sees "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return chosen
