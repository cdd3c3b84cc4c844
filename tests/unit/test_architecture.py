"""ARCHITECTURE.md's import rules, checked on the source: the document stays true or this fails.

Every import statement of src/ is read with `ast` (including those inside functions and under
TYPE_CHECKING: a deferred import is still a dependency), so the rules hold for the code as
written, not for what one test run happens to import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

LAYERS: dict[str, tuple[int, frozenset[str]]] = {
    # name: (rank, the top-level packages and modules of `dlenv` in it)
    "entry": (5, frozenset({"__main__"})),
    "cli": (4, frozenset({"cli"})),
    "orchestration": (3, frozenset({"ops"})),
    "services": (2, frozenset({"cloud", "ssh", "provision", "containers"})),
    "foundation": (
        1,
        frozenset({"__init__", "config", "errors", "paths", "terminal", "statefile"}),
    ),
}
"""A module may import its own layer and the layers below it, never one above (ARCHITECTURE.md)."""

RANK = {part: rank for rank, parts in LAYERS.values() for part in parts}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file; relative imports resolved."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    return _parse(path.read_text(), package)


def _parse(text: str, package: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from dlenv.ops import move` imports dlenv.ops.move
                yield node.lineno, f"{module}.{alias.name}"


def _modules(package: str) -> list[tuple[str, Path]]:
    return [
        (".".join(p.relative_to(SRC).with_suffix("").parts), p)
        for p in sorted((SRC / package).rglob("*.py"))
    ]


def _top(module: str) -> str:
    """`dlenv.cloud.launch` -> `cloud`; `dlenv.ops.move` -> `ops`; `dlenv` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _breaks(rule: str, module: str, imported: str) -> bool:
    """Whether `module` importing `imported` breaks `rule`."""
    root = imported.split(".")[0]
    if rule == "aws":
        return root in {"boto3", "botocore"} and _top(module) != "cloud"
    if rule == "click":
        return root == "click" and _top(module) != "cli"
    if rule == "smoke":
        return module.startswith("dlenv_smoke") and root == "dlenv"
    assert rule == "layers"
    if not (module.startswith("dlenv.") and root == "dlenv"):
        return False
    mine, theirs = RANK.get(_top(module)), RANK.get(_top(imported))
    return mine is not None and theirs is not None and theirs > mine


@lru_cache(maxsize=1)
def _all_imports() -> list[tuple[str, str, str]]:
    """(module, "file:line", imported module) for every import of src/, parsed once."""
    return [
        (module, f"{path.relative_to(ROOT)}:{line}", imported)
        for module, path in _modules("dlenv") + _modules("dlenv_smoke")
        for line, imported in _imports(path)
    ]


def _violations(rule: str) -> list[str]:
    return [
        f"{where} imports {imported}"
        for module, where, imported in _all_imports()
        if _breaks(rule, module, imported)
    ]


def test_a_rule_breaker_is_seen() -> None:
    assert _breaks("aws", "dlenv.ops.lifecycle", "botocore.exceptions")
    assert not _breaks("aws", "dlenv.cloud.launch", "botocore.exceptions")
    assert _breaks("click", "dlenv.ops.move", "click")
    assert _breaks("layers", "dlenv.provision.runner", "dlenv.ops.lifecycle")
    assert _breaks("layers", "dlenv.config", "dlenv.ssh.target")
    assert not _breaks("layers", "dlenv.cli.up", "dlenv.provision.runner")
    assert _breaks("smoke", "dlenv_smoke.job", "dlenv.errors")


def test_every_package_and_top_level_module_has_a_layer() -> None:
    """A new package or loose module must be placed (here and in ARCHITECTURE.md) to exist."""
    tops = {p.stem for p in (SRC / "dlenv").glob("*.py")}
    tops |= {p.name for p in (SRC / "dlenv").iterdir() if (p / "__init__.py").is_file()}
    assert tops - set(RANK) == set(), "place it in a layer in ARCHITECTURE.md and in LAYERS"
    assert set(RANK) - tops == set(), "LAYERS names something that no longer exists"


def test_architecture_md_names_every_package_and_loose_module() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    missing = [t for t in RANK if t not in {"__init__", "__main__"} and f"`{t}" not in text]
    assert missing == [], f"ARCHITECTURE.md does not mention {missing}"


def test_architecture_md_places_every_ops_module() -> None:
    """Each module of ops/ is one command's work (or what several share): the ops row names it,
    so a newcomer finds where `up`, `down` or `stop` live from the table alone."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `ops/` |"))
    modules = {p.stem for p in (SRC / "dlenv" / "ops").glob("*.py")} - {"__init__"}
    assert sorted(m for m in modules if f"`{m}`" not in row) == []


@pytest.mark.parametrize(
    ("rule", "meaning"),
    [
        ("aws", "only dlenv.cloud talks to AWS (imports boto3/botocore)"),
        ("click", "only dlenv.cli imports click: library code raises DlenvError, never click's"),
        ("smoke", "dlenv_smoke runs alone on the instance: it imports nothing of dlenv"),
        ("layers", "imports point down: cli -> orchestration -> services -> foundation"),
    ],
)
def test_import_rule(rule: str, meaning: str) -> None:
    assert _violations(rule) == [], meaning


def test_the_parser_sees_deferred_and_relative_imports() -> None:
    """So that no rule passes by blindness: imports inside functions, `from . import`."""
    names = {name for _, name in _imports(SRC / "dlenv" / "cloud" / "session.py")}
    assert {"boto3", "botocore.exceptions", "dlenv.errors.UsageError"} <= names
    text = "def f() -> None:\n    from ..cli import _app\n    from . import launch\n"
    assert set(_parse(text, "dlenv.cloud")) == {
        (2, "dlenv.cli"),
        (2, "dlenv.cli._app"),
        (3, "dlenv.cloud"),
        (3, "dlenv.cloud.launch"),
    }


AWS_CLIENTS = frozenset({"ec2", "sts", "ssm", "service_quotas"})
"""`Aws`'s typed client accessors (cloud/session.py): reaching one is talking to AWS."""


def _aws_calls(text: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each place the code reaches an AWS client: an attribute named like one
    of `Aws`'s clients (`aws.ec2`, `self.aws.sts`, ...), or a call of a `.client(...)` method
    (`aws.client("ssm")`). An attribute named `client` that is not called (fabric's
    `conn.client`) is not a client being made."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr in AWS_CLIENTS:
            yield node.lineno, f".{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "client"
        ):
            yield node.lineno, ".client(...)"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_stub_imports(text: str) -> Iterator[tuple[int, str]]:
    """(line, module) for each import of boto3-stubs' packages (`mypy_boto3_*`) outside an
    `if TYPE_CHECKING:` block: the stubs are a dev dependency, absent where dlenv is installed."""
    tree = ast.parse(text)
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.split(".")[0].startswith("mypy_boto3"):
                yield node.lineno, name


def test_a_call_to_aws_outside_cloud_is_seen() -> None:
    text = (
        "def f(aws, run, conn):\n"
        "    aws.ec2.create_tags(Resources=[], Tags=[])\n"
        "    aws.client('sts').get_caller_identity()\n"
        "    run.aws.service_quotas.get_service_quota(ServiceCode='ec2', QuotaCode='L-1')\n"
        "    events = aws.ec2.meta.events\n"
        "    conn.client.get_transport()\n"  # fabric's SSH client: an attribute, not made here
        "    status.remote\n"
    )
    assert list(_aws_calls(text)) == [
        (2, ".ec2"),
        (3, ".client(...)"),
        (4, ".service_quotas"),
        (5, ".ec2"),
    ]
    stub = "from typing import TYPE_CHECKING\nimport mypy_boto3_ec2\n"
    guarded = "if TYPE_CHECKING:\n    from mypy_boto3_ec2.type_defs import TagTypeDef\n"
    assert list(_runtime_stub_imports(stub)) == [(2, "mypy_boto3_ec2")]
    assert list(_runtime_stub_imports(guarded)) == []


def test_only_cloud_calls_aws() -> None:
    """Every AWS call is a function of dlenv.cloud (inside `translated`, typed, returning
    dataclasses): ops/, provision/ and cli/ call those and never hold a boto3 client."""
    found = [
        f"{path.relative_to(ROOT)}:{line} uses {what}"
        for module, path in _modules("dlenv")
        if _top(module) != "cloud"
        for line, what in _aws_calls(path.read_text())
    ]
    assert found == [], "add a function to the dlenv.cloud module of the resource and call it"


def test_boto3_stubs_are_imported_for_the_type_checker_only() -> None:
    """`dlenv --help` and an installed dlenv must not need boto3-stubs (a dev dependency)."""
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for _, path in _modules("dlenv")
        for line, name in _runtime_stub_imports(path.read_text())
    ]
    assert found == [], (
        "import it under `if TYPE_CHECKING:` (with `from __future__ import annotations`)"
    )
