"""GPU table: memory, peak dense bf16/fp16 tensor throughput, compute capability, price.

The estimate needs a GPU to compare against even when none is attached (planning a
rental), and a peak FLOP/s figure for the time estimate. Numbers are the vendors'
dense (no sparsity) tensor-core figures with fp32 accumulation, which is what
training uses; memory is the total the driver reports (what `nvidia-smi` shows),
not the marketing figure. Prices are indicative on-demand cloud rates in USD per
GPU-hour; they vary by provider and month, so they are editable: a YAML file
`<config_dir>/gpus.yaml` (or FTWIZARD_GPUS) may override any field of any entry or
add new entries, e.g.

    H100: {price_per_hour: 2.10}
    "My lab card": {memory_gib: 48, bf16_tflops: 150, compute_capability: "8.9"}
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

GIB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_bytes: int
    bf16_tflops: float  # dense; 0 where the chip has no bf16 (then fp16 is used)
    fp16_tflops: float
    compute_capability: str | None  # None for non-NVIDIA
    price_per_hour: float | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    vendor: str = "nvidia"

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    @property
    def supports_bf16(self) -> bool:
        if self.vendor != "nvidia":
            return self.bf16_tflops > 0
        try:
            return float(self.compute_capability or 0) >= 8.0
        except ValueError:
            return False

    @property
    def peak_tflops(self) -> float:
        """Peak dense tensor throughput in the precision training will use here."""
        return self.bf16_tflops if self.supports_bf16 and self.bf16_tflops else self.fp16_tflops

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        d["memory_gib"] = round(self.memory_gib, 2)
        d["supports_bf16"] = self.supports_bf16
        return d


def _mib(n: int) -> int:
    return n * 1024 * 1024


# Sources: NVIDIA data sheets / architecture whitepapers (Turing, Ampere GA100/GA102,
# Ada, Hopper), AMD Instinct MI300X data sheet; memory as reported by the driver.
BUILTIN: tuple[GpuSpec, ...] = (
    GpuSpec("T4", _mib(15360), 0.0, 65.0, "7.5", 0.35, ("tesla t4",)),
    GpuSpec("L4", _mib(23034), 121.0, 121.0, "8.9", 0.80, ()),
    GpuSpec("A10G", _mib(23028), 70.0, 70.0, "8.6", 1.00, ("a10g",)),
    GpuSpec("RTX 3090", _mib(24576), 71.0, 71.0, "8.6", 0.30, ("geforce rtx 3090", "3090")),
    GpuSpec("RTX 4090", _mib(24564), 165.2, 165.2, "8.9", 0.70, ("geforce rtx 4090", "4090")),
    GpuSpec("A100 40GB", _mib(40960), 312.0, 312.0, "8.0", 1.30, ("a100-40gb", "a100-sxm4-40gb", "a100-pcie-40gb", "a100 pcie 40gb", "a100 40")),
    GpuSpec("A100 80GB", _mib(81920), 312.0, 312.0, "8.0", 1.80, ("a100", "a100-80gb", "a100-sxm4-80gb", "a100 80gb pcie", "a100 80")),
    GpuSpec("H100", _mib(81559), 989.0, 989.0, "9.0", 2.50, ("h100 80gb hbm3", "h100-sxm", "h100 sxm", "h100-80gb")),
    GpuSpec("H100 PCIe", _mib(81559), 756.0, 756.0, "9.0", 2.20, ("h100 pcie",)),
    GpuSpec("H200", _mib(143771), 989.0, 989.0, "9.0", 3.50, ("h200 141gb", "h200-sxm")),
    GpuSpec("MI300X", 192 * GIB, 1307.0, 1307.0, None, 2.50, ("instinct mi300x", "amd instinct mi300x"), "amd"),
)


def _norm(name: str) -> str:
    n = name.lower().replace("nvidia", "").replace("_", " ").replace("-", " ")
    return re.sub(r"\s+", " ", n).strip()


def overrides_path() -> Path:
    env = os.environ.get("FTWIZARD_GPUS")
    if env:
        return Path(env).expanduser()
    from ftwizard.paths import config_dir

    return config_dir() / "gpus.yaml"


_FIELDS = {"memory_gib", "memory_bytes", "bf16_tflops", "fp16_tflops", "compute_capability", "price_per_hour", "aliases", "vendor"}


def _load_overrides(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    import yaml

    from ftwizard.errors import UserError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"GPU table override is not valid YAML: {e}", where=str(path), fix="fix or delete the file") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError("GPU table override must map GPU names to fields", where=str(path),
                        fix="e.g. 'H100: {price_per_hour: 2.1}'")
    for name, fields in data.items():
        bad = set(fields) - _FIELDS
        if bad:
            raise UserError(f"GPU {name!r}: unknown field(s) {sorted(bad)}", where=str(path),
                            fix=f"allowed: {', '.join(sorted(_FIELDS))}")
    return {str(k): v for k, v in data.items()}


def _apply(spec: GpuSpec | None, name: str, fields: dict) -> GpuSpec:
    kw = dict(fields)
    if "memory_gib" in kw:
        kw["memory_bytes"] = int(float(kw.pop("memory_gib")) * GIB)
    if "aliases" in kw:
        kw["aliases"] = tuple(str(a).lower() for a in kw["aliases"])
    if "compute_capability" in kw and kw["compute_capability"] is not None:
        kw["compute_capability"] = str(kw["compute_capability"])
    if spec is None:
        base = dict(memory_bytes=0, bf16_tflops=0.0, fp16_tflops=0.0, compute_capability=None)
        base.update(kw)
        if not base.get("fp16_tflops"):
            base["fp16_tflops"] = base.get("bf16_tflops", 0.0)
        return GpuSpec(name=name, **base)
    return replace(spec, **kw)


def catalog(path: Path | None = None) -> list[GpuSpec]:
    """The built-in table with the user's overrides applied."""
    specs = {s.name: s for s in BUILTIN}
    for name, fields in _load_overrides(path or overrides_path()).items():
        existing = lookup_in(list(specs.values()), name)
        key = existing.name if existing else name
        specs[key] = _apply(existing, name if existing is None else existing.name, fields)
    return list(specs.values())


def lookup_in(specs: list[GpuSpec], name: str) -> GpuSpec | None:
    """Match a user-typed or NVML-reported name ('NVIDIA H100 80GB HBM3') to an entry."""
    n = _norm(name)
    for s in specs:
        if n == _norm(s.name) or n in (_norm(a) for a in s.aliases):
            return s
    # NVML names carry extra words; take the entry whose name (or alias) appears in it,
    # preferring the longest match so "A100-SXM4-80GB" is not taken for the 40 GB card.
    best, best_len = None, 0
    for s in specs:
        for cand in (s.name, *s.aliases):
            c = _norm(cand)
            if c and c in n and len(c) > best_len:
                best, best_len = s, len(c)
    return best


def lookup(name: str) -> GpuSpec | None:
    return lookup_in(catalog(), name)


def names() -> list[str]:
    return [s.name for s in catalog()]
