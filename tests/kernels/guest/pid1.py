"""PID 1 of a kernel-tier guest: runs stage2.sh, reaps every orphan, then powers the guest off.

A shell as PID 1 would leave re-parented processes as zombies (tests double-fork on purpose and wait
for processes to be gone), so this reaps everything until stage2.sh itself has exited.
"""

from __future__ import annotations

import ctypes
import os
import sys

RB_POWER_OFF = 0x4321FEDC  # reboot(2) through glibc, which adds the magic numbers


def main() -> None:
    repo = sys.argv[1]
    stage2 = os.fork()
    if stage2 == 0:
        os.execv("/bin/sh", ["/bin/sh", f"{repo}/tests/kernels/guest/stage2.sh", repo])  # noqa: S606
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        if pid == stage2:
            break
    os.sync()
    ctypes.CDLL(None).reboot(ctypes.c_int(RB_POWER_OFF))


if __name__ == "__main__":
    main()
