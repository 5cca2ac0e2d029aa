#!/usr/bin/env python3
"""Run a command and write its CPU time and peak RSS to a file, as `user_s sys_s maxrss_kb`.

    python3 bench/rusage.py OUT CMD [ARGS...]

The format of GNU time's `-f "%U %S %M"`, with microseconds instead of its hundredths of a
second: a 10 s run at 200/s costs about 0.1 s of CPU, of which hundredths are a tenth.
The CPU time is the command's alone (os.wait4 on it). The peak RSS still comes from GNU
time (/usr/bin/time) running the command: a process Python starts carries Python's own
RSS (~14 MB) into its peak, GNU time's child starts from ~1 MB. GNU time's own CPU, well
under a millisecond, is in the total. stdout and stderr pass through; the exit status is
the command's.
"""
import os
import subprocess
import sys
import tempfile

if len(sys.argv) < 3:
    sys.exit("usage: rusage.py OUT CMD [ARGS...]")
if not os.access("/usr/bin/time", os.X_OK):
    sys.exit("rusage.py: /usr/bin/time not found: apt-get install time")
with tempfile.NamedTemporaryFile("r", prefix="rusage-", suffix=".rss") as rss_file:
    try:
        child = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name] + sys.argv[2:])
    except OSError as e:
        sys.exit(f"rusage.py: cannot run {sys.argv[2]}: {e}")
    _, wait_status, usage = os.wait4(child.pid, 0)
    lines = rss_file.read().split()
    rss = lines[-1] if lines and lines[-1].isdigit() else "0"
status = os.waitstatus_to_exitcode(wait_status)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_utime:.6f} {usage.ru_stime:.6f} {rss}\n")
sys.exit(status if status >= 0 else 128 - status)
