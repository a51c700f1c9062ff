"""The CPU instruction set that PyTorch's kernels use, pinned for the micro world's reproduction.

PyTorch chooses its vectorised CPU kernels (softmax, attention, element-wise ops, reductions) once, when
torch is imported: the widest set the CPU offers (AVX-512 on recent server CPUs, AVX2 on most other
x86-64 machines) unless the environment variable ATEN_CPU_CAPABILITY names another. Kernels of
different widths add in different orders and round differently, and 2,000 pre-training steps turn a
last-bit difference in one forward into another model. `rlvr reproduce micro` therefore asks for AVX2:
Intel's Core and Xeon CPUs offer it since Haswell (2013) and AMD's since Excavator (2015), every Zen
included, while AVX-512 is missing from most desktop and laptop CPUs (Intel's since Alder Lake, AMD's
before Zen 4), so AVX2 is the widest set that almost every user's x86-64 machine can run. It is slower than AVX-512 where both
exist, which does not matter at the micro world's size.

PyTorch honours ATEN_CPU_CAPABILITY=avx2 without checking the CPU (a CPU without AVX2 would stop on an
illegal instruction), so `pin()` sets it only where the CPU offers AVX2 and FMA. On other CPUs (older
x86, ARM) PyTorch keeps its own choice and `note()` says that the results cannot match the committed
ones bit for bit.
"""

from __future__ import annotations

import os
import platform
import sys

ENV = "ATEN_CPU_CAPABILITY"
PINNED = "avx2"            # the value of ATEN_CPU_CAPABILITY the main job runs with
PINNED_NAME = "AVX2"       # what torch.backends.cpu.get_cpu_capability() reports under it

# set by pin(): why the pin could not be applied (None when it was, or when pin() was not called)
_pin_problem: str | None = None


def cpu_offers_avx2() -> bool | None:
    """Whether this CPU has AVX2 and FMA (what PyTorch's AVX2 kernels need); None when unknown."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x64", "i686", "i386"):
        return False
    try:        # numpy's runtime CPU feature table (numpy >= 2; numpy 1.x keeps it under numpy.core)
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = None
    if features is not None and "AVX2" in features:
        return bool(features["AVX2"] and features.get("FMA3", False))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx2" in flags and "fma" in flags
    except OSError:
        pass
    return None


def pin() -> None:
    """Ask PyTorch for the AVX2 kernels in this process and its children: sets ATEN_CPU_CAPABILITY=avx2
    when it is unset and the CPU offers AVX2. It takes effect only if torch is not imported yet, so call
    it first thing; `note()` reports afterwards whether it did."""
    global _pin_problem
    _pin_problem = None
    if os.environ.get(ENV):
        if os.environ[ENV] != PINNED:
            _pin_problem = f"{ENV}={os.environ[ENV]} is set in the environment"
        return
    offers = cpu_offers_avx2()
    if offers is False:
        _pin_problem = ("this CPU does not offer AVX2 and FMA" if platform.machine().lower() in
                        ("x86_64", "amd64", "x64") else f"this is not an x86-64 CPU ({platform.machine()})")
        return
    if "torch" in sys.modules:
        _pin_problem = f"torch was imported before {ENV} could be set"
        return
    os.environ[ENV] = PINNED


def current() -> str:
    """The instruction set PyTorch dispatches its CPU kernels to in this process (imports torch)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def note() -> str | None:
    """None when PyTorch runs the pinned AVX2 kernels; else one line saying what it runs and why."""
    cap = current()
    if cap == PINNED_NAME:
        return None
    why = _pin_problem or (f"{ENV} is not set to {PINNED}" if os.environ.get(ENV) != PINNED
                           else "PyTorch did not take the setting")
    return (f"PyTorch's CPU kernels here are {cap}, not the pinned {PINNED_NAME} ({why}): the base model and the "
            f"table can differ from the committed ones beyond the last bit; compare them within the regression "
            f"test's statistical tolerance")


__all__ = ["ENV", "PINNED", "PINNED_NAME", "cpu_offers_avx2", "current", "note", "pin"]
