#!/usr/bin/env python3
"""Sums a `perf report --sort pid` listing (thread ids) by process name,
looking each thread up in /proc while the processes still run."""
import os
import re
import sys
from collections import defaultdict


def process_of(tid):
    for pid in os.listdir("/proc"):
        if pid.isdigit() and os.path.isdir(f"/proc/{pid}/task/{tid}"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                arg0 = argv[0].decode(errors="replace")
                if arg0.startswith("postgres"):
                    return "postgres"
                if arg0.startswith("nginx"):
                    return "nginx"
                return os.path.basename(arg0.split(" ")[0]) or "?"
            except OSError:
                return "?"
    return "(exited by then: wrk, perf)"


def main():
    totals = defaultdict(float)
    for line in sys.stdin:
        m = re.match(r"\s*([\d.]+)%\s+(\d+):(\S*)", line)
        if m:
            totals[process_of(m.group(2))] += float(m.group(1))
    for name, share in sorted(totals.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{share:6.2f}%  {name}")


main()
