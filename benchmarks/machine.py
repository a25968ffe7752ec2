"""What every benchmark prints about the machine it ran on (numbers mean little without it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    """Cores, CPU model, Python and the current 1/5/15-minute load average."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{os.cpu_count()} cores ({models[0] if models else platform.processor() or '?'}), "
            f"Python {platform.python_version()}, load average {load}")
