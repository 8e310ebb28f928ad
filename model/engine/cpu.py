"""CPU instruction-set features that decide the engine's precision (detected, never assumed).

bf16 inference is fast only where the CPU has matrix units for it: Intel AMX (``amx_bf16`` +
``amx_tile``) or at least the AVX-512 bf16 dot products (``avx512_bf16``). Hosts change from day
to day, so the flags are read at run time from ``/proc/cpuinfo`` (or ``lscpu`` where that file is
missing).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["CpuFeatures", "detect_cpu_features", "parse_cpu_flags"]

_FLAGS = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU flags the engine choice looks at; ``model`` is the CPU's model name, for logs."""

    amx_bf16: bool = False  # AMX tiles with bf16 matmul (Sapphire Rapids and later)
    amx_tile: bool = False
    amx_int8: bool = False
    avx512_bf16: bool = False  # AVX-512 bf16 dot products (Cooper Lake, Zen 4+)
    avx512_vnni: bool = False
    avx512f: bool = False
    avx2: bool = False
    model: str = ""

    @property
    def has_amx(self) -> bool:
        """True when the CPU has AMX tiles that do bf16."""
        return self.amx_bf16 and self.amx_tile

    @property
    def has_bf16(self) -> bool:
        """True when the CPU computes bf16 natively (AMX or avx512_bf16)."""
        return self.has_amx or self.avx512_bf16

    def describe(self) -> str:
        """Short human summary, e.g. ``"avx512_bf16, no amx"``.

        >>> CpuFeatures(avx512f=True, avx512_bf16=True).describe()
        'avx512_bf16, no amx'
        >>> CpuFeatures(avx2=True).describe()
        'avx2, no bf16'
        """
        if self.has_amx:
            return "amx_bf16" + (", avx512_bf16" if self.avx512_bf16 else "")
        if self.avx512_bf16:
            return "avx512_bf16, no amx"
        best = "avx512f" if self.avx512f else "avx2" if self.avx2 else "no avx2"
        return f"{best}, no bf16"

    def flags(self) -> list[str]:
        """The detected flags among those this module knows, in a fixed order."""
        return [flag for flag in _FLAGS if getattr(self, flag)]


def parse_cpu_flags(flags: str | list[str], model: str = "") -> CpuFeatures:
    """Build :class:`CpuFeatures` from a whitespace-separated flag string (``/proc/cpuinfo``'s ``flags``).

    >>> parse_cpu_flags("fpu avx2 avx512f avx512_bf16").describe()
    'avx512_bf16, no amx'
    """
    present = set(flags.split() if isinstance(flags, str) else flags)
    return CpuFeatures(**{flag: flag in present for flag in _FLAGS}, model=model)


@lru_cache(maxsize=1)
def detect_cpu_features() -> CpuFeatures:
    """Flags of this machine's CPU (cached); all False where neither /proc/cpuinfo nor lscpu answers."""
    flags, model = _read_proc_cpuinfo(Path("/proc/cpuinfo"))
    if flags is None:
        flags, model = _read_lscpu()
    return parse_cpu_flags(flags or "", model=model)


def _read_proc_cpuinfo(path: Path) -> tuple[str | None, str]:
    try:
        text = path.read_text()
    except OSError:
        return None, ""
    flags, model = None, ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and flags is None:
            flags = value.strip()
        elif key == "model name" and not model:
            model = value.strip()
    return flags, model


def _read_lscpu() -> tuple[str | None, str]:
    binary = shutil.which("lscpu")
    if binary is None:
        return None, ""
    try:
        text = subprocess.run([binary], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, ""
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
    return fields.get("Flags"), fields.get("Model name", "")
