"""Suite-wide rules: every test gets its tier marker by itself, and xdist keeps shared state whole.

Tiers (select with `-m`; `scripts/test` runs them all):
- `unit`: no engine, no moto, no containers (the default, fast)
- `moto`: AWS faked by moto (in-process `mock_aws` or a `ThreadedMotoServer`)
- `docker`: needs a running Docker engine (images, containers)
- `hosts`: systemd + sshd host containers reached over real SSH (also `docker`)
- `e2e`: the whole journey through the real CLI (tests/e2e; also `hosts` and `docker`)

A tier comes from the test's folder or from the fixtures it uses (below), so a new test gets the
right one without anyone remembering a decorator; markers written on a test still count, and
`--strict-markers` still rejects a misspelt one. `-m "not docker"` stays the quick subset.

Under pytest-xdist, `scripts/test` runs `-n 3 --dist loadscope`: a module's tests stay in one
worker, in file order, so a module-scoped fixture (a provisioned host, a running Lab, a cluster)
is set up once, not once per worker. (`--dist loadgroup` would allow finer groups, but xdist 3.8
cannot tag pytest 9's node ids: its groups are silently ignored.) Session fixtures run once per
worker; the expensive ones (image builds) take a file lock (`harness.locks`) so workers never
race.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import harness.locks  # noqa: F401  (the test cache dir is resolved from the real HOME, first)

# Ctrl-C tests send SIGINT to the real CLI. A shell starts background jobs (`scripts/test &`, a
# CI runner's wrapper) with SIGINT ignored, every child inherits that, and Python leaves an
# ignored SIGINT ignored: the CLI would never see the Ctrl-C. A handler here resets to the
# default at each exec, so the CLI starts with Ctrl-C working, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if TYPE_CHECKING:
    from harness.hosts import TestHost

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "moto", "docker", "hosts", "e2e")

# Folders whose every test is in a tier (relative to tests/)
_FOLDER_TIERS: dict[str, tuple[str, ...]] = {
    "e2e": ("e2e", "hosts", "docker", "moto"),
    "cloud": ("moto",),
    "concurrency": ("moto",),
}
# Fixtures that put a test in a tier (wherever they are defined)
_FIXTURE_TIERS: dict[str, tuple[str, ...]] = {
    # host containers over SSH (tests/harness, tests/*/conftest.py)
    "host": ("hosts", "docker"),
    "host_pool": ("hosts", "docker"),
    "host_images": ("hosts", "docker"),
    "provisioned_host": ("hosts", "docker"),
    "provisioned_image": ("hosts", "docker"),
    # the Docker engine (tests/docker/conftest.py)
    "docker_client": ("docker",),
    "base_image": ("docker",),
    "cpu_build": ("docker",),
    "cpu_image": ("docker",),
    "compose_cmd": ("docker",),
    "isolated_local": ("docker",),
    # moto (tests/motocli.py, tests/cloud/conftest.py, tests/concurrency/conftest.py)
    "moto_server": ("moto",),
    "aws": ("moto",),
}


def tiers_of(item: pytest.Item) -> set[str]:
    """The tier markers `item` earns from its folder, its fixtures and its own markers."""
    found = {m.name for m in item.iter_markers() if m.name in TIERS}
    try:
        rel = item.path.resolve().relative_to(TESTS)
    except ValueError:
        rel = None
    if rel is not None and len(rel.parts) > 1:
        found.update(_FOLDER_TIERS.get(rel.parts[0], ()))
    for name in getattr(item, "fixturenames", ()):
        found.update(_FIXTURE_TIERS.get(name, ()))
    if found & {"hosts", "e2e"}:
        found.add("docker")  # host containers run on the engine: `-m "not docker"` leaves them out
    found.discard("unit")
    return found or {"unit"}


@pytest.fixture(scope="session", autouse=True)
def _private_dlenv_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A state and config dir of this session's own where a test does not set one.

    Tests that forget to isolate dlenv's state would otherwise share the user's real one (keys,
    locks, the ssh include) with each other and with every other xdist worker."""
    old = {k: os.environ.get(k) for k in ("DLENV_STATE_DIR", "DLENV_CONFIG_DIR")}
    root = tmp_path_factory.mktemp("dlenv-default")
    os.environ.setdefault("DLENV_STATE_DIR", str(root / "state"))
    os.environ.setdefault("DLENV_CONFIG_DIR", str(root / "config"))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DLENV_STATE_DIR of this session's own, for in-process provisioning and the CLI beside it."""
    state = tmp_path_factory.mktemp("dlenv-state")
    old = os.environ.get("DLENV_STATE_DIR")
    os.environ["DLENV_STATE_DIR"] = str(state)
    yield state
    if old is None:
        os.environ.pop("DLENV_STATE_DIR", None)
    else:
        os.environ["DLENV_STATE_DIR"] = old


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """pip's find-links folder with the CPU torch wheel (fails, naming the fix, where absent)."""
    from docker_support import find_wheelhouse

    return find_wheelhouse()


@pytest.fixture(scope="session")
def host_images() -> None:
    """The host images (tests/harness/hosts.py), built once per machine, under a lock."""
    from harness import ensure_images, require_engine

    require_engine()
    ensure_images()


@pytest.fixture
def host(host_images: None, tmp_path: Path) -> Iterator[TestHost]:
    """A fresh (unprovisioned) systemd + sshd host container, removed after the test."""
    from harness import start_host

    h = start_host(work=tmp_path)
    yield h
    h.stop()


@pytest.fixture(scope="session")
def provisioned_image(
    host_images: None, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The host image with the whole stack provisioned (tests/harness/provisioned.py)."""
    from harness.provisioned import provisioned_image as image

    return image(wheelhouse, tmp_path_factory.mktemp("provisioning"))


@pytest.fixture
def provisioned_host(provisioned_image: str, tmp_path: Path) -> Iterator[TestHost]:
    """A fresh container of the provisioned image (its Lab answering): for tests that are not
    about provisioning."""
    from harness.provisioned import start_provisioned_host

    h = start_provisioned_host(provisioned_image, work=tmp_path)
    yield h
    h.stop()


@pytest.fixture(scope="module", autouse=True)
def _moto_seed_kept() -> None:
    """Before each module's own fixtures: this worker's moto server (if started) still has its
    seed, whatever module ran before (an in-process `mock_aws()` resets moto's backends)."""
    from motocli import ensure_seeded

    ensure_seeded()


@pytest.fixture(autouse=True)
def _moto_seed_kept_per_test() -> None:
    """The same before each test: a module may mix `mock_aws()` tests and moto-server tests."""
    from motocli import ensure_seeded

    ensure_seeded()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for tier in sorted(tiers_of(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """`DLENV_TEST_TIMELINE=FILE`: one JSON line per test (worker, start, end, module), to see
    how xdist's workers spent the run (benchmarks/suite_timeline.py reads it): which module held
    a worker at the end while the other sat idle."""
    path = os.environ.get("DLENV_TEST_TIMELINE")
    if not path:
        return (yield)
    import json
    import time

    start = time.time()
    try:
        return (yield)
    finally:
        line = {
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "test": item.nodeid,
            "start": start,
            "end": time.time(),
        }
        with open(path, "a") as out:  # one short write per line: appends do not interleave
            out.write(json.dumps(line) + "\n")
