"""What the installed torch says about itself and the GPUs it can reach.

Every torch call that can fail on a broken machine (CUDA init, device properties) is wrapped so
that its exception *text* and warnings are recorded as observations: those messages ("Found no
NVIDIA driver", "driver ... too old", "no kernel image", error 803) are exactly what the
diagnosis rules match on.
"""

from __future__ import annotations

import platform
import sys
import warnings
from typing import Any


def collect(*, want_gpu: bool = True) -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:  # missing or broken install: that is a finding, not a crash
        return {"import_error": f"{type(exc).__name__}: {exc}", "python": sys.version.split()[0]}

    info: dict[str, Any] = {
        "version": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "cudnn": None,
        "cudnn_available": None,
        "cuda_available": False,
        "device_count": 0,
        "arch_list": [],
        "devices": [],
        "init_error": None,
        "warnings": [],
        "cpu_threads": torch.get_num_threads(),
    }
    info["cpu_only_build"] = info["cuda"] is None and info["hip"] is None
    if not want_gpu or info["cpu_only_build"]:
        return info
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            info["cuda_available"] = bool(torch.cuda.is_available())
            torch.cuda.init()  # raises the real reason when is_available() said False
            info["device_count"] = torch.cuda.device_count()
            info["arch_list"] = list(torch.cuda.get_arch_list())
            for i in range(info["device_count"]):
                props = torch.cuda.get_device_properties(i)
                info["devices"].append(
                    {
                        "index": i,
                        "name": props.name,
                        "compute_capability": f"{props.major}.{props.minor}",
                        "memory_mib": props.total_memory // (1024 * 1024),
                        "sm_count": props.multi_processor_count,
                    }
                )
        except Exception as exc:
            info["init_error"] = f"{type(exc).__name__}: {exc}"
        try:
            info["cudnn_available"] = bool(torch.backends.cudnn.is_available())
            info["cudnn"] = torch.backends.cudnn.version()
        except Exception as exc:
            info["cudnn_available"] = False
            info.setdefault("cudnn_error", f"{type(exc).__name__}: {exc}")
    info["warnings"] = [str(w.message) for w in caught][:10]
    return info
