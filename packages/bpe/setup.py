"""Build the optional native core of tinylm.bpe (C11, needs only a C compiler and Python headers).

Two extension modules, each built from every .c file in its folder:
  tinylm.bpe._core        csrc/core/*.c   pre-tokenizer scanner and BPE encoding
  tinylm.bpe._train_core  csrc/train/*.c  BPE training (pair counts, merge loop)
Both are optional: if the compiler fails, the package still installs and runs the pure-Python
reference (tinylm.bpe.native_available() then reports False).

TINYLM_BPE_CFLAGS adds compiler flags (e.g. "-fsanitize=address,undefined -O1 -g" for the
sanitizer build, see scripts/sanitize.sh).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).parent
EXTRA = shlex.split(os.environ.get("TINYLM_BPE_CFLAGS", ""))
CFLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", *EXTRA]
LDFLAGS = [f for f in EXTRA if f.startswith("-fsanitize")]


def extension(name: str, folder: str) -> Extension | None:
    sources = sorted(str(p.relative_to(HERE)) for p in (HERE / "csrc" / folder).glob("*.c"))
    if not sources:
        return None
    return Extension(
        f"tinylm.bpe.{name}",
        sources=sources,
        include_dirs=[str(HERE / "csrc" / folder)],
        extra_compile_args=CFLAGS,
        extra_link_args=LDFLAGS,
        optional=True,  # a failed build leaves the pure-Python path, never a failed install
    )


modules = [extension("_core", "core"), extension("_train_core", "train")]
setup(ext_modules=[m for m in modules if m is not None])
