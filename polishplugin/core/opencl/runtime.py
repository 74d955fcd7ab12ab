"""OpenCL runtime: device discovery, one context/queue per device, and a program build cache.

pyopencl is imported lazily, so importing this module never fails; calling into it without an
OpenCL platform raises :class:`OpenCLUnavailable` with a sentence saying why.

Device choice (first match wins): the ``device`` argument, the environment variable
``POLISHPLUGIN_OPENCL_DEVICE``, else the first GPU, else the first other device (PoCL CPU).
A device is named either by its index in :func:`list_devices` (``"0"``, ``1``) or by
``"platform:device"`` indices (``"0:1"``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

__all__ = [
    "OpenCLUnavailable", "DeviceInfo", "opencl_available", "list_devices", "get_context", "get_queue",
    "build_program", "read_source", "KernelRuntime", "get_runtime", "ENV_DEVICE", "choose_backend",
]

ENV_DEVICE = "POLISHPLUGIN_OPENCL_DEVICE"
_HERE = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
_contexts: dict = {}
_programs: dict = {}
_kernels: dict = {}


class OpenCLUnavailable(RuntimeError):
    """No usable OpenCL platform/device (or pyopencl is not installed)."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int            # position in list_devices()
    platform_index: int
    device_index: int
    platform: str
    name: str
    kind: str             # "GPU", "CPU", "ACCELERATOR", "OTHER"
    global_mem_mb: int
    compute_units: int

    @property
    def label(self) -> str:
        return f"{self.platform_index}:{self.device_index} {self.kind} {self.name} ({self.platform})"


def _cl():
    try:
        import pyopencl as cl  # noqa: WPS433 (lazy import on purpose)
    except Exception as exc:  # ImportError or a broken ICD loader
        raise OpenCLUnavailable(f"no OpenCL: pyopencl cannot be imported ({exc}); install 'pyopencl[pocl]' "
                                "or use the numpy backend.") from exc
    return cl


def _all_devices():
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except Exception as exc:  # pyopencl raises LogicError when the ICD loader finds nothing
        raise OpenCLUnavailable(f"no OpenCL platform found ({exc}); install an OpenCL driver "
                                "(e.g. PoCL for CPUs) or use the numpy backend.") from exc
    out = []
    for pi, plat in enumerate(platforms):
        try:
            devs = plat.get_devices()
        except Exception:
            continue
        for di, dev in enumerate(devs):
            out.append((pi, di, plat, dev))
    if not out:
        raise OpenCLUnavailable("no OpenCL device found on any platform; install an OpenCL driver "
                                "(e.g. PoCL for CPUs) or use the numpy backend.")
    return out


def _kind(dev) -> str:
    cl = _cl()
    t = dev.type
    if t & cl.device_type.GPU:
        return "GPU"
    if t & cl.device_type.CPU:
        return "CPU"
    if t & cl.device_type.ACCELERATOR:
        return "ACCELERATOR"
    return "OTHER"


def list_devices() -> list[DeviceInfo]:
    """All OpenCL devices of all platforms (raises :class:`OpenCLUnavailable` when there are none)."""
    infos = []
    for i, (pi, di, plat, dev) in enumerate(_all_devices()):
        infos.append(DeviceInfo(i, pi, di, plat.name.strip(), dev.name.strip(), _kind(dev),
                                int(dev.global_mem_size // 2 ** 20), int(dev.max_compute_units)))
    return infos


def opencl_available() -> bool:
    """True when at least one OpenCL device can be listed."""
    try:
        return len(list_devices()) > 0
    except OpenCLUnavailable:
        return False


def choose_backend(device: str | int | None = None) -> tuple[str, str | None]:
    """The one answer to "numpy or OpenCL, and on which device" for every program and core module.

    ``device``: ``None``, ``""`` or ``"auto"``: OpenCL on the default device (:data:`ENV_DEVICE`, else the
    first GPU, else the first device) when a platform exists, else numpy; ``"cpu"`` or ``"numpy"``: numpy;
    ``"opencl"``: the default OpenCL device, :class:`OpenCLUnavailable` when there is none; any other value
    names a device (``"0"``, ``1``, ``"0:1"`` = platform:device) and must open, else
    :class:`OpenCLUnavailable` naming it.  Returns ``("numpy", None)`` or ``("opencl", name or None)``.
    """
    arg = "" if device is None else str(device).strip()
    if arg.lower() in ("cpu", "numpy"):
        return "numpy", None
    if arg.lower() in ("", "auto"):
        return ("opencl", None) if opencl_available() else ("numpy", None)
    if arg.lower() == "opencl":
        list_devices()  # raises OpenCLUnavailable with the reason
        return "opencl", None
    get_context(arg)  # raises OpenCLUnavailable naming the device
    return "opencl", arg


def _select(device) -> int:
    devs = _all_devices()
    if device is None:
        device = os.environ.get(ENV_DEVICE) or None
    if device is None:
        kinds = [_kind(d[3]) for d in devs]
        return kinds.index("GPU") if "GPU" in kinds else 0
    s = str(device).strip()
    try:
        if ":" in s:
            p, d = (int(x) for x in s.split(":", 1))
            for i, (pi, di, _, _) in enumerate(devs):
                if pi == p and di == d:
                    return i
            raise OpenCLUnavailable(f"OpenCL device '{s}' does not exist; available: "
                                    + ", ".join(x.label for x in list_devices()))
        i = int(s)
    except ValueError as exc:
        raise OpenCLUnavailable(f"OpenCL device '{s}' is neither an index nor 'platform:device'.") from exc
    if not 0 <= i < len(devs):
        raise OpenCLUnavailable(f"OpenCL device index {i} out of range (0..{len(devs) - 1}); available: "
                                + ", ".join(x.label for x in list_devices()))
    return i


def get_context(device=None):
    """``(context, queue, DeviceInfo)`` for the chosen device (cached per device)."""
    cl = _cl()
    idx = _select(device)
    with _lock:
        if idx not in _contexts:
            pi, di, plat, dev = _all_devices()[idx]
            ctx = cl.Context([dev])
            queue = cl.CommandQueue(ctx)
            info = list_devices()[idx]
            _contexts[idx] = (ctx, queue, info)
        return _contexts[idx]


def get_queue(device=None):
    return get_context(device)[1]


def read_source(filename: str) -> str:
    """Text of a kernel file in this folder, with ``#include "common.h"`` inlined."""
    with open(os.path.join(_HERE, filename)) as fh:
        src = fh.read()
    if '#include "common.h"' in src:
        with open(os.path.join(_HERE, "common.h")) as fh:
            src = src.replace('#include "common.h"', fh.read())
    return src


def build_program(context, source: str, options: tuple[str, ...] | list[str] = ()):
    """Build (or fetch from the cache) a program; the cache key is (context, source, options)."""
    cl = _cl()
    key = (id(context), hashlib.sha1(source.encode()).hexdigest(), tuple(options))
    with _lock:
        prg = _programs.get(key)
        if prg is None:
            try:
                prg = cl.Program(context, source).build(options=list(options))
            except Exception as exc:
                raise RuntimeError(f"OpenCL kernel build failed: {exc}") from exc
            _programs[key] = prg
        return prg


class KernelRuntime:
    """Context + queue + a cached program of one ``.cl`` file (helper for the ``*_cl.py`` hosts)."""

    def __init__(self, filename: str, device=None, options: tuple[str, ...] = ()):
        self.context, self.queue, self.info = get_context(device)
        self.program = build_program(self.context, read_source(filename), options)

    def kernel(self, name: str):
        """The (cached) ``cl.Kernel`` ``name`` of this program (not thread-safe across concurrent launches)."""
        cl = _cl()
        key = (id(self.program), name)
        with _lock:
            k = _kernels.get(key)
            if k is None:
                k = _kernels[key] = cl.Kernel(self.program, name)
            return k


def get_runtime(filename: str, device=None, options: tuple[str, ...] = ()) -> KernelRuntime:
    return KernelRuntime(filename, device, options)


def _main() -> int:
    try:
        devs = list_devices()
    except OpenCLUnavailable as exc:
        print(exc)
        return 1
    for d in devs:
        print(f"[{d.index}] {d.label}  {d.compute_units} CUs, {d.global_mem_mb} MiB")
    print("default:", get_context()[2].label, f"(override with {ENV_DEVICE}=<index>|<platform:device>)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
