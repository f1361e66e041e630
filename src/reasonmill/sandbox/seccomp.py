"""A seccomp filter that keeps sandboxed code out of new user namespaces and keyrings.

Why: inside a fresh user namespace an unprivileged program holds a full capability set
(raw sockets, ``mount``, netfilter), the usual first step of a kernel exploit. The
filter answers ``EPERM`` to ``unshare`` and ``setns`` (any flags), to ``clone`` with
``CLONE_NEWUSER``, and ``ENOSYS`` to ``clone3`` (its flags sit in memory a filter cannot
read; libc then falls back to ``clone``). ``add_key``, ``request_key`` and ``keyctl`` get
``EPERM`` too, as in Docker's default profile: a uid's kernel keyring outlives the
run, a channel between the runs of one zygote box (``zygote.py``). Syscalls of a foreign
ABI (i386 via ``int 0x80``, x32) are refused, since their numbers differ and would slip
past.

The program is classic BPF built here byte by byte (no libseccomp); bubblewrap loads it
with ``--seccomp FD`` just before it execs the command, and on the rlimit backend a few
lines of Python (:func:`loader_args`) load it with ``prctl`` and exec the command.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
import threading
from typing import NamedTuple

from reasonmill.sandbox.process import open_fd_arg

# BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
CLONE_NEWUSER = 0x10000000

# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6]
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LO = 0, 4, 16


class _Abi(NamedTuple):
    audit_arch: int
    clone: int
    unshare: int
    setns: int
    clone3: int
    x32_bit: int | None  # syscall numbers with this bit are the x32 ABI
    keyring: tuple[int, int, int]  # add_key, request_key, keyctl


_ABIS = {
    "x86_64": _Abi(0xC000003E, clone=56, unshare=272, setns=308, clone3=435, x32_bit=0x40000000,
                   keyring=(248, 249, 250)),
    "aarch64": _Abi(0xC00000B7, clone=220, unshare=97, setns=268, clone3=435, x32_bit=None,
                    keyring=(217, 218, 219)),
}  # fmt: skip


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The compiled filter for ``machine`` (default: this one); raises ``ValueError`` on
    an architecture without a syscall table here."""
    machine = machine or platform.machine()
    abi = _ABIS.get(machine)
    if abi is None:
        raise ValueError(f"no seccomp syscall table for architecture {machine!r}")
    rets = {"allow": _RET_ALLOW, "deny": _RET_ERRNO | errno.EPERM, "nosys": _RET_ERRNO | errno.ENOSYS}
    # Jump targets are labels (one-element rows) resolved to relative offsets below.
    rows: list[tuple] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 0, "deny", abi.audit_arch),  # a foreign ABI
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if abi.x32_bit is not None:
        rows.append((_JGE_K, "deny", 0, abi.x32_bit))
    rows += [(_JEQ_K, "deny", 0, nr) for nr in abi.keyring]
    rows += [
        (_JEQ_K, "deny", 0, abi.unshare),
        (_JEQ_K, "deny", 0, abi.setns),
        (_JEQ_K, "nosys", 0, abi.clone3),
        (_JEQ_K, 0, "allow", abi.clone),
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LO),
        (_JSET_K, "deny", "allow", CLONE_NEWUSER),
        ("allow",),
        ("deny",),
        ("nosys",),
    ]
    at = {row[0]: i for i, row in enumerate(rows) if len(row) == 1}

    def off(target: int | str, i: int) -> int:
        return target if isinstance(target, int) else at[target] - i - 1

    out = []
    for i, row in enumerate(rows):
        if len(row) == 1:
            out.append(_ins(_RET_K, 0, 0, rets[row[0]]))
        else:
            code, jt, jf, k = row
            out.append(_ins(code, off(jt, i), off(jf, i), k))
    return b"".join(out)


_lock = threading.Lock()
_memfd: int | None = None


def filter_path() -> str | None:
    """A path that opens to the compiled filter (a memfd of this process, so nothing is
    left on disk), or None on an architecture without a table. Each ``open`` of it reads
    from the start, so every sandboxed run can load it on its own descriptor."""
    global _memfd
    with _lock:
        if _memfd is None:
            try:
                data = program()
            except ValueError:
                return None
            fd = os.memfd_create("reasonmill-seccomp", os.MFD_CLOEXEC)
            os.write(fd, data)
            _memfd = fd
        return f"/proc/{os.getpid()}/fd/{_memfd}"


#: Loads the filter from the descriptor in argv[1], then execs argv[2:]. For the rlimit
#: backend, which has no bubblewrap to load it: run by the sandbox's interpreter as the
#: throwaway uid, after ``setpriv --no-new-privs`` (which lets an unprivileged process
#: install a filter).
_LOADER = """
import ctypes, os, sys
fd = int(sys.argv[1])
prog = os.read(fd, 1 << 16)
os.close(fd)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(Prog(len(prog) // 8, prog)), 0, 0):
    sys.exit("sandbox: loading the seccomp filter failed: " + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[2], sys.argv[2:])
"""


def loader_args(python: str, path: str) -> list[str]:
    """argv prefix that runs the rest of argv under the filter at ``path`` (a descriptor
    for it is opened by ``process.execute``, see ``open_fd_arg``)."""
    return [python, "-I", "-S", "-c", _LOADER, open_fd_arg(path)]
