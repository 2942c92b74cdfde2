#!/usr/bin/env python3
"""Sets the EEVDF scheduler slice of every thread of the given processes (Linux >= 6.12).

    python3 loadgen/sched_slice.py SLICE_NS PID...

SLICE_NS is passed as `sched_runtime` of a SCHED_OTHER `sched_setattr` (the kernel clamps it
to 0.1-100 ms; 0 restores the default slice). Children started afterwards inherit it, so
`bash -c 'python3 loadgen/sched_slice.py 100000 $$; exec ringmq-loadgen --embedded ...'`
runs the load generator and its embedded broker with 100 us slices (PERF.md).
"""
import ctypes
import os
import struct
import sys

SYS_SCHED_SETATTR = 314  # x86-64
SCHED_ATTR_SIZE = 56


def set_slice(tid: int, slice_ns: int) -> None:
    # struct sched_attr: size, policy, flags, nice, priority, runtime, deadline, period,
    # util_min, util_max
    attr = struct.pack("IIQiIQQQII", SCHED_ATTR_SIZE, 0, 0, 0, 0, slice_ns, 0, 0, 0, 0)
    buffer = ctypes.create_string_buffer(attr)
    if libc.syscall(SYS_SCHED_SETATTR, tid, buffer, 0) != 0:
        errno = ctypes.get_errno()
        sys.exit(f"sched_setattr({tid}): {os.strerror(errno)}")


if len(sys.argv) < 3:
    sys.exit("usage: sched_slice.py SLICE_NS PID...")
libc = ctypes.CDLL(None, use_errno=True)
slice_ns = int(sys.argv[1])
for pid in sys.argv[2:]:
    for tid in os.listdir(f"/proc/{pid}/task"):
        set_slice(int(tid), slice_ns)
