"""The lowest versions setup.cfg declares are the ones CI installs and tests
(.ci/floors.txt, used by .ci/run), so a declared floor cannot drift from a tested
one."""

import configparser
import re
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _declared_floors() -> dict[str, Version]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    floors = {}
    for line in config["options"]["install_requires"].split("\n"):
        if line.strip():
            name, version = re.fullmatch(r"([\w.-]+)>=([\w.]+)", line.strip()).groups()
            floors[name.lower()] = Version(version)
    return floors


def _tested_floors() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = Version(version)
    return pins


def test_every_declared_floor_is_the_version_ci_tests():
    assert _declared_floors() == _tested_floors()


def test_ci_runs_the_suite_on_the_floors():
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "-c .ci/floors.txt" in run
    assert run.rstrip().endswith("-m pytest -p no:cacheprovider")
