#!/usr/bin/env python3
"""Summarises fuzz/logs/TARGET.log files (written by run.sh): executions,
exec/s, coverage, corpus and findings, as a Markdown table row per target."""
import re
import sys
from pathlib import Path

logs = Path(__file__).parent / "logs"
names = sys.argv[1:] or sorted(p.stem for p in logs.glob("*.log"))
print("| target | seconds | executions | exec/s | cov | ft | corpus | findings |")
print("|---|---|---|---|---|---|---|---|")
for name in names:
    text = (logs / f"{name}.log").read_text(errors="replace")
    status = [l for l in text.splitlines() if re.match(r"#\d+\s", l)]
    last = status[-1] if status else ""
    get = lambda pat, s=last: (re.search(pat, s) or [None, "?"])[1]
    units = get(r"stat::number_of_executed_units: (\d+)", text)
    secs = get(r"Done \d+ runs in (\d+) second", text)
    rate = get(r"stat::average_exec_per_sec:\s+(\d+)", text)
    crash = "crash" if "deadly signal" in text or "ERROR: libFuzzer" in text else "none"
    cov, ft, corp = get(r"cov: (\d+)"), get(r"ft: (\d+)"), get(r"corp: (\S+)")
    print(f"| {name} | {secs} | {units} | {rate} | {cov} | {ft} | {corp} | {crash} |")
