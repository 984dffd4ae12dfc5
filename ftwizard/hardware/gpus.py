"""Detected GPUs (through NVML, package nvidia-ml-py) and a live memory/utilisation sampler.

NVML is read directly rather than through torch: it is fast, needs no CUDA context (so
it costs no GPU memory), and sees every process on the card. No driver, no GPU, or an
NVML error is a normal situation (a laptop, a CPU box, a container without the
driver), never a crash: `detect()` then returns no GPUs and one line saying why, with
the CPU facts (cores, RAM) a CPU run will use.

`Sampler` is what the trainer and the monitor call every few seconds: per GPU memory
used/total and utilisation, or, without a GPU, this process's RSS and CPU %.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field


@dataclass
class GpuProcess:
    pid: int
    name: str
    used_bytes: int | None


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str | None
    memory_total: int
    memory_used: int
    memory_free: int
    utilization_gpu: int | None  # %
    utilization_memory: int | None  # %
    temperature_c: int | None
    power_w: float | None
    power_limit_w: float | None
    compute_capability: str | None
    bf16: bool
    processes: list[GpuProcess] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CpuInfo:
    cores: int
    logical_cpus: int
    ram_total: int
    ram_available: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Detection:
    gpus: list[GpuInfo]
    cpu: CpuInfo
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    message: str | None = None  # why there are no GPUs, in one line

    def to_dict(self) -> dict:
        return {
            "gpus": [g.to_dict() for g in self.gpus],
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "nvml_version": self.nvml_version,
            "message": self.message,
            "cpu": self.cpu.to_dict(),
        }


def cpu_info() -> CpuInfo:
    import psutil

    vm = psutil.virtual_memory()
    return CpuInfo(
        cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cpus=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        ram_total=int(vm.total),
        ram_available=int(vm.available),
    )


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _try(fn, *a, default=None):
    try:
        return fn(*a)
    except Exception:  # a field a GPU or driver does not report: leave it out
        return default


def _nvml():
    """Import and initialise NVML; (module, None) or (None, reason)."""
    try:
        import pynvml
    except ImportError:
        return None, "NVML is not available (package nvidia-ml-py is not installed)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        reason = str(e) or type(e).__name__
        if "Driver Not Loaded" in reason or "LibraryNotFound" in type(e).__name__ or "not found" in reason.lower():
            return None, f"no NVIDIA driver found ({reason})"
        return None, f"NVML could not start ({reason})"
    except OSError as e:
        return None, f"no NVIDIA driver found ({e})"
    return pynvml, None


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:
        return "?"


def detect() -> Detection:
    """Every GPU with memory, utilisation, temperature, power, versions and processes."""
    cpu = cpu_info()
    nv, why = _nvml()
    if nv is None:
        return Detection([], cpu, message=why)
    try:
        count = nv.nvmlDeviceGetCount()
        driver = _s(_try(nv.nvmlSystemGetDriverVersion, default="") or "") or None
        cuda_v = _try(nv.nvmlSystemGetCudaDriverVersion_v2) or _try(nv.nvmlSystemGetCudaDriverVersion)
        cuda = f"{cuda_v // 1000}.{(cuda_v % 1000) // 10}" if cuda_v else None
        nvml_v = _s(_try(nv.nvmlSystemGetNVMLVersion, default="") or "") or None
        gpus = []
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            util = _try(nv.nvmlDeviceGetUtilizationRates, h)
            cc = _try(nv.nvmlDeviceGetCudaComputeCapability, h)
            cc_s = f"{cc[0]}.{cc[1]}" if cc else None
            power = _try(nv.nvmlDeviceGetPowerUsage, h)
            limit = _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
            procs = []
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                for p in _try(getattr(nv, getter, lambda _h: []), h, default=[]) or []:
                    used = getattr(p, "usedGpuMemory", None)
                    procs.append(GpuProcess(int(p.pid), _process_name(int(p.pid)), int(used) if used else None))
            gpus.append(GpuInfo(
                index=i,
                name=_s(nv.nvmlDeviceGetName(h)),
                uuid=_s(_try(nv.nvmlDeviceGetUUID, h, default="")) or None,
                memory_total=int(mem.total), memory_used=int(mem.used), memory_free=int(mem.free),
                utilization_gpu=int(util.gpu) if util else None,
                utilization_memory=int(util.memory) if util else None,
                temperature_c=_try(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0)),
                power_w=power / 1000.0 if power else None,
                power_limit_w=limit / 1000.0 if limit else None,
                compute_capability=cc_s,
                bf16=bool(cc and cc[0] >= 8),
                processes=procs,
            ))
        msg = None if gpus else "NVML found no GPUs"
        return Detection(gpus, cpu, driver, cuda, nvml_v, msg)
    except nv.NVMLError as e:
        return Detection([], cpu, message=f"NVML error: {e}")
    finally:
        _try(nv.nvmlShutdown)


def gpu_target(info: GpuInfo):
    """The detected GPU as an estimate target, with peak FLOP/s and price from the catalog."""
    from ftwizard.hardware.catalog import lookup
    from ftwizard.hardware.estimate import GpuTarget

    spec = lookup(info.name)
    return GpuTarget(
        name=info.name,
        memory_bytes=info.memory_total,
        peak_tflops=spec.peak_tflops if spec else None,
        price_per_hour=spec.price_per_hour if spec else None,
        supports_bf16=info.bf16,
        source="detected",
    )


# ---- live sampling -------------------------------------------------------------
@dataclass
class Sample:
    """One reading. For GPUs one entry per device; without a GPU, `gpus` is empty."""

    time: float
    gpus: list[dict]  # {index, memory_used, memory_total, utilization}
    process_rss: int
    process_cpu_percent: float

    @property
    def memory_used(self) -> int:
        return sum(g["memory_used"] for g in self.gpus) if self.gpus else self.process_rss

    def to_dict(self) -> dict:
        return asdict(self)


class Sampler:
    """Cheap repeated readings for the trainer's events and the monitor.

    Holds NVML open between calls (re-initialising costs milliseconds); falls back to
    this process's RSS and CPU % when there is no GPU. Use as a context manager or call
    close().
    """

    def __init__(self, pid: int | None = None):
        import psutil

        self._proc = psutil.Process(pid or os.getpid())
        self._proc.cpu_percent(None)  # first call primes the counter
        self._nv, self.message = _nvml()
        self._handles = []
        if self._nv is not None:
            try:
                self._handles = [self._nv.nvmlDeviceGetHandleByIndex(i) for i in range(self._nv.nvmlDeviceGetCount())]
            except Exception as e:
                self.message = f"NVML error: {e}"
                self.close()

    @property
    def has_gpu(self) -> bool:
        return bool(self._handles)

    def sample(self) -> Sample:
        gpus = []
        for i, h in enumerate(self._handles):
            try:
                mem = self._nv.nvmlDeviceGetMemoryInfo(h)
                util = _try(self._nv.nvmlDeviceGetUtilizationRates, h)
                gpus.append({"index": i, "memory_used": int(mem.used), "memory_total": int(mem.total),
                             "utilization": int(util.gpu) if util else None})
            except Exception:
                continue
        try:
            rss = int(self._proc.memory_info().rss)
            cpu = float(self._proc.cpu_percent(None))
        except Exception:
            rss, cpu = 0, 0.0
        return Sample(time.time(), gpus, rss, cpu)

    def close(self) -> None:
        if self._nv is not None:
            _try(self._nv.nvmlShutdown)
            self._nv = None
        self._handles = []

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
