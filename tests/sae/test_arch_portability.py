"""Nothing in the install or the code assumes x86: miStudio must install and run on aarch64 (ARM servers, Apple
silicon under Linux, Jetson). Offline checks, so CI on x86 catches an x86-only addition before an ARM user does.

How the allowlist below was established (2026-12-01): `pip install --dry-run --only-binary=:all: --platform
manylinux_2_28_aarch64 --python-version 3.11 -r requirements.txt` (torch aside) resolved all 79 packages to
aarch64 or pure-Python wheels; torch 2.13 ships aarch64 wheels on PyPI (CUDA/SBSA) and on PyTorch's CPU index.
"""
from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent
# requirements with compiled code whose pinned version publishes manylinux aarch64 wheels (see the docstring; ruff,
# dev only: `pip download --only-binary=:all: --platform manylinux_2_17_aarch64 ruff==0.17.6`, 2026-12-07)
NATIVE_WITH_AARCH64_WHEELS = {"torch", "safetensors", "psutil", "numpy", "pyarrow", "pandas", "ruff"}
X86_MARKERS = re.compile(r"x86_64|amd64|win32|i[3-6]86|\bavx\d*\b|\bsse\d\b|intel[-_]openmp|\bmkl\b|"
                         r"intel_extension_for_pytorch|ipex|linux/amd64|x86-64", re.IGNORECASE)
X86_CODE = re.compile(r"import\s+(intel_extension_for_pytorch|cpuinfo|mkl)\b|platform\.machine\(\)\s*==\s*['\"]"
                      r"(x86_64|AMD64)|torch\.backends\.mkl\.|/usr/lib/x86_64-linux-gnu|cpu_features")


def requirement_lines() -> list[str]:
    out = []
    for name in ("requirements.txt", "requirements-dev.txt"):
        out += [line.strip() for line in (ROOT / name).read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    return out


def test_requirements_pin_no_platform_specific_wheels():
    for line in requirement_lines():
        assert not X86_MARKERS.search(line), f"x86-specific requirement: {line}"
        assert not re.search(r"https?://|\.whl\b|\+cu\d+|--(extra-)?index-url", line), \
            f"a wheel URL / local version pins one platform: {line}"
        assert ";" not in line or "platform_machine" not in line, f"platform marker drops ARM: {line}"


def test_every_native_requirement_is_known_to_have_aarch64_wheels():
    """A new requirement with compiled code must be checked for aarch64 wheels and added to the allowlist."""
    for line in requirement_lines():
        name = re.split(r"[=<>!~\[ ;]", line, maxsplit=1)[0]
        try:
            wheel = md.distribution(name).read_text("WHEEL") or ""
        except md.PackageNotFoundError:
            continue  # not installed here (e.g. just added): nothing to inspect; pinned pure-Python is the norm
        pure = "Root-Is-Purelib: true" in wheel
        assert pure or name.lower() in NATIVE_WITH_AARCH64_WHEELS, \
            f"{name} has compiled code: check it publishes aarch64 wheels, then add it to the allowlist"


def test_code_has_no_x86_only_imports_or_paths():
    files = [*ROOT.glob("mistudio_core/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py",
             *ROOT.glob("scripts/*.sh"), *ROOT.glob("bench/*.sh")]
    hits = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in files for m in X86_CODE.finditer(f.read_text())]
    assert hits == []


def test_dockerfiles_build_for_arm64():
    main = (ROOT / "Dockerfile").read_text()
    assert "--platform=linux/amd64" not in main and "FROM --platform" not in main
    assert "linux/arm64" in main and "TARGETARCH" in main  # documented and handled
    base = re.search(r"ARG BASE=(\S+)", main).group(1)
    assert base.startswith("nvidia/cuda:") and "ubuntu" in base  # a multi-arch (amd64 + arm64/SBSA) image
    assert "|| echo" in main.split("pip install bitsandbytes", 1)[1][:100]  # optional where it has no wheel
    jetson = (ROOT / "Dockerfile.jetson").read_text()
    assert "igpu" in jetson and "grep -v '^torch=='" in jetson  # the platform's own torch is kept
