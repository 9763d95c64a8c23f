"""CPU seconds spent by the parts of a benchmarked system: processes named by pid,
and the embedded stack's PostgreSQL (its backends too) and Kafka, found by the
stack's data directory on their command lines."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil

Sample = dict[str, dict[int, float]]


class CpuMeter:
    def __init__(self, data_dir: Path | str, parts: dict[str, int] | None = None) -> None:
        self.data_dir = str(data_dir)
        self.parts: dict[str, int] = dict(parts or {})

    def add(self, part: str, pid: int) -> None:
        self.parts[part] = pid

    def _processes(self) -> dict[str, list[psutil.Process]]:
        found: dict[str, list[psutil.Process]] = {part: [] for part in [*self.parts, "postgres", "kafka"]}
        for part, pid in self.parts.items():
            with contextlib.suppress(psutil.Error):
                found[part] = [psutil.Process(pid)]
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if self.data_dir in cmdline:
                part = "kafka" if "java" in cmdline else "postgres"
                with contextlib.suppress(psutil.Error):
                    found[part] += [proc, *proc.children(recursive=True)]
        return found

    def sample(self) -> Sample:
        """CPU seconds (user + system) of each part's processes, by pid."""
        seconds: Sample = {}
        for part, procs in self._processes().items():
            seconds[part] = {}
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    seconds[part][proc.pid] = times.user + times.system
        return seconds


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) one process has spent so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def cpu_spent(before: Sample, after: Sample) -> dict[str, float]:
    """CPU seconds per part between two samples (a process new since `before` counts
    whole; one that ended between them is not counted)."""
    return {part: sum(s - before.get(part, {}).get(pid, 0.0) for pid, s in pids.items())
            for part, pids in after.items()}
