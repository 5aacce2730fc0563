"""Every example runs top to bottom in fast mode, writes exactly the figures that
examples/README.md shows for it, and those figures are committed under docs/images."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the examples draw with matplotlib")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figures_in_index() -> dict[str, set[str]]:
    """Script name -> the PNG names its section of examples/README.md shows."""
    index = (EXAMPLES / "README.md").read_text()
    figures = {}
    for section in index.split("\n## ")[1:]:
        script = re.search(r"\]\((plot_\w+\.py)\)", section)
        assert script, f"a section of examples/README.md names no script: {section!r}"
        figures[script.group(1)] = set(
            re.findall(r"\(\.\./docs/images/([\w-]+\.png)\)", section)
        )
    return figures


SCRIPTS = sorted(p.name for p in EXAMPLES.glob("plot_*.py"))


def test_every_example_is_in_the_index_with_committed_figures():
    figures = _figures_in_index()
    assert set(figures) == set(SCRIPTS)
    for script, names in figures.items():
        assert names, f"{script} shows no figure in examples/README.md"
        for name in names:
            path = ROOT / "docs" / "images" / name
            assert path.read_bytes()[:8] == PNG_SIGNATURE, path


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_in_fast_mode_and_writes_its_figures(script, tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "SKEBM_DISABLE_PLUGIN_AUTOLOAD"
    }
    env.update(
        SKEBM_EXAMPLES_FAST="1",
        SKEBM_EXAMPLES_OUTPUT=str(tmp_path / "figures"),
        # Only the plugin the plugin example installs; others on the machine stay out.
        SKEBM_LOAD_PLUGINS="skebm-rwm",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    written = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert written == _figures_in_index()[script], result.stdout
    for name in written:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 10_000, name
