"""The peak memory of a child process, for tests that show a refusal allocated nothing.

Not `ru_maxrss`: Linux carries a process's high-water mark across fork and exec, so a
child of a large pytest process reports the parent's size. `VmHWM` is the child's own.
"""

# Appended to a child's script: prints its peak resident memory in KiB.
PRINT_PEAK = ("\nprint('peak_kib', next(int(line.split()[1]) for line in "
              "open('/proc/self/status') if line.startswith('VmHWM:')))\n")


def peak_kib(stdout):
    """The peak memory a child printed with PRINT_PEAK."""
    return int(stdout.split("peak_kib")[-1].split()[0])
