"""The installed llama.cpp libraries hold no AVX-512 or AMX code (issue 11).

A natively built llama-cpp-python died at its first completion on Xeon machines with
AVX-512/AMX (a general protection fault in libggml-cpu.so), and a library built
``-march=native`` crashes on any CPU older than the build machine's. The Makefile
builds it for a portable AVX2 baseline (``-DGGML_NATIVE=OFF -DGGML_AVX512=OFF
-DGGML_AMX_*=OFF``); this test disassembles the installed libraries with ``objdump``
and fails on any instruction that names a zmm register, an AVX-512 opmask register
(``%k0``–``%k7``, used by AVX-512VL code on ymm/xmm too) or an AMX tile (``%tmm``,
``tdpb*``, ``ldtilecfg``, ``tileloadd``...). The detector is itself tested on tiny
objects compiled with ``-mavx512f`` and ``-mamx-tile`` so the check can fail.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

OBJDUMP = shutil.which("objdump")
needs_objdump = pytest.mark.skipif(OBJDUMP is None, reason="objdump (binutils) is not installed")

INSTRUCTION = re.compile(r"^\s*[0-9a-f]+:\t(?P<text>\S.*)$")
FUNCTION = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
UNPORTABLE = {
    "zmm register": re.compile(r"%zmm\d+"),
    "AVX-512 opmask register": re.compile(r"%k[0-7]\b"),
    "AMX tile instruction": re.compile(
        r"%tmm\d|^(?:tdp\w+|ldtilecfg|sttilecfg|tileloadd\w*|tilestored|tilezero|tilerelease)\b"
    ),
}


def unportable_instructions(binary: Path) -> tuple[Counter, list[str]]:
    """Counts per kind of AVX-512/AMX instruction in ``binary``, and the first few as ``function: text``."""
    counts: Counter = Counter()
    examples: list[str] = []
    function = "?"
    cmd = [OBJDUMP, "-d", "--no-show-raw-insn", str(binary)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, errors="replace") as proc:
        for line in proc.stdout:
            found = INSTRUCTION.match(line)
            if not found:
                named = FUNCTION.match(line)
                function = named["name"] if named else function
                continue
            text = found["text"].strip()
            for kind, pattern in UNPORTABLE.items():
                if pattern.search(text):
                    counts[kind] += 1
                    if len(examples) < 5:
                        examples.append(f"{function}: {text}")
                    break
    assert proc.returncode == 0, f"objdump -d {binary} failed with code {proc.returncode}"
    return counts, examples


def llama_cpp_libraries() -> list[Path]:
    """libllama.so and libggml*.so shipped inside the llama_cpp package (found without importing it).

    The versioned names (``libggml-cpu.so.0``...) are copies or links of these, so they are left out.
    """
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None:
        pytest.skip("llama_cpp is not installed: pip install 'reasonmill[local]' to check its CPU libraries")
    found: dict[Path, None] = {}
    for root in spec.submodule_search_locations or []:
        for pattern in ("**/libggml*.so", "**/libllama.so"):
            for path in sorted(Path(root).glob(pattern)):
                found[path.resolve()] = None
    if not found:
        pytest.skip(f"no libllama/libggml shared library under {spec.submodule_search_locations}")
    return list(found)


@needs_objdump
def test_installed_llama_cpp_libraries_have_no_avx512_or_amx_code():
    libraries = llama_cpp_libraries()
    problems = []
    for lib in libraries:
        counts, examples = unportable_instructions(lib)
        if counts:
            problems.append(f"{lib}: {dict(counts)}, e.g. " + "; ".join(examples))
    assert not problems, (
        "llama.cpp was built with AVX-512/AMX code, which crashed on Xeon machines (issue 11) and fails "
        "on CPUs without it; rebuild portable: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX512=OFF "
        "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF' pip install --force-reinstall "
        "--no-cache-dir 'llama-cpp-python[server]' (see the Makefile)\n" + "\n".join(problems)
    )


# -- the detector finds what it must, and nothing in AVX2 code -------------------------------------

AVX512_SOURCE = """
#include <immintrin.h>
void add16(const float *a, const float *b, float *c) {
    _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b)));
}
"""
AVX512VL_SOURCE = """
#include <immintrin.h>
__m256 masked_add(__m256 a, __m256 b, __mmask8 m) { return _mm256_mask_add_ps(a, m, a, b); }
"""
AMX_SOURCE = """
void tile_dot(const void *config) {
    __asm__ volatile("ldtilecfg (%0)\\n\\ttdpbssd %%tmm1, %%tmm2, %%tmm0\\n\\ttilerelease" :: "r"(config));
}
"""
AVX2_SOURCE = """
#include <immintrin.h>
void add8(const float *a, const float *b, float *c) {
    _mm256_storeu_ps(c, _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b), _mm256_loadu_ps(c)));
}
"""


def compile_object(tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the detector's test objects")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    obj = tmp_path / f"{name}.o"
    subprocess.run([gcc, "-O2", "-c", *flags, str(src), "-o", str(obj)], check=True, capture_output=True)
    return obj


@needs_objdump
@pytest.mark.parametrize(
    ("name", "source", "flags", "kind", "function"),
    [
        ("avx512", AVX512_SOURCE, ["-mavx512f"], "zmm register", "add16"),
        ("avx512vl", AVX512VL_SOURCE, ["-mavx512f", "-mavx512vl"], "AVX-512 opmask register", "masked_add"),
        ("amx", AMX_SOURCE, [], "AMX tile instruction", "tile_dot"),
    ],
)
def test_detector_finds_avx512_and_amx_instructions(tmp_path, name, source, flags, kind, function):
    counts, examples = unportable_instructions(compile_object(tmp_path, name, source, *flags))
    assert counts[kind] >= 1, (counts, examples)
    assert examples[0].startswith(f"{function}: ")


@needs_objdump
def test_detector_accepts_avx2_code(tmp_path):
    obj = compile_object(tmp_path, "avx2", AVX2_SOURCE, "-mavx2", "-mfma")
    disassembly = subprocess.run([OBJDUMP, "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    assert "%ymm" in disassembly, "the AVX2 object should use ymm registers"
    assert unportable_instructions(obj) == (Counter(), [])
