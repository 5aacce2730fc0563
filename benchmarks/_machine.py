"""The line every benchmark prints about the machine it ran on."""

import os
import platform

import sklearn
import torch


def describe_machine(parallelism: str) -> str:
    """Python, torch, scikit-learn, CPU, ``parallelism`` (how fits were run) and
    the load average, on one line."""
    load = os.getloadavg()
    return (
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, {platform.machine()} "
        f"({os.cpu_count()} CPUs), {parallelism}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
