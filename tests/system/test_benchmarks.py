"""The benchmarks keep working: each runs in its --quick mode (seconds). They print
measurements; nothing here asserts a timing."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize(
    "script", ["speed.py", "throughput.py", "scaling.py", "quality.py"]
)
def test_benchmark_quick_mode_runs(script):
    args = (
        ["--quick"]
        if script != "throughput.py"
        else ["--max-chains", "1000", "--steps", "2", "--repeats", "1"]
    )
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| " in result.stdout
