"""Architecture rules of ddbstreams, checked statically on ``src/ddbstreams`` with :mod:`ast`.

Nothing of the package is imported; the analysis is in ``tests/support/architecture.py``.
``python -m tests.unit.test_architecture`` prints every finding, allowlisted or not.

**a. Privacy.** No module touches another module's or another class's underscore names
(``_x`` and ``__x``; dunders such as ``__init__`` are public). Violations are:

- ``from ddbstreams.m import _x`` where ``_x`` is not a submodule. Importing a private
  *module* (``from ddbstreams import _decode``, ``import ddbstreams.model._decode``) and public
  names from it is fine.
- ``m._x`` where ``m`` names a ddbstreams module (an import alias or a dotted
  ``ddbstreams._m``) other than the current one and ``_x`` is not a submodule of it.
- ``obj._x`` (or ``getattr``/``setattr``/``hasattr``/``delattr(obj, "_x")``) where ``obj``
  is not ``self``, ``cls`` or ``super()`` and ``_x`` is defined by some ddbstreams class
  (method, class attribute, ``__slots__`` entry, ``self._x = ...``) or module (module-level
  name), *except* when
  - the access is inside a class ``C`` (any enclosing class, methods and nested functions
    included) and ``_x`` is defined by ``C`` or one of its ddbstreams base classes: another
    instance of the same class (``other._x`` in ``__eq__``, ``shared_with._data``) is
    fine; or
  - the access is in module-level code or a module-level function and ``_x`` is defined in
    the same module (the module is the unit of privacy outside classes); or
  - ``obj`` is a parameter whose annotation names no ddbstreams class
    (``loop: asyncio.AbstractEventLoop``).

  Names no ddbstreams class or module defines are not checked: we cannot tell statically
  what ``obj`` is, and underscore names of stdlib and third-party objects are their
  business. The type of ``obj`` is not inferred: an ``_x`` defined by the enclosing class
  and by another class counts as the enclosing class's.

**b. Size.** No class longer than :data:`MAX_CLASS_LINES` lines and no function (methods and
nested functions included) longer than :data:`MAX_FUNCTION_LINES`, counted from the
``class``/``def`` line to the last line, docstring included, decorators not; exceptions in
:data:`SIZE_ALLOWLIST`, each with its reason.

**c. Layering** (DESIGN.md, "Layers"; every import counts, lazy and ``TYPE_CHECKING`` ones
too):

- data flows top to bottom, nothing calls upward: a module imports only modules of its own
  layer or of layers below it (:data:`LAYERS`, one sub-package per layer);
- nothing outside the CLI package imports it but ``ddbstreams.__main__``.

Findings of today that are still to be fixed are in :data:`KNOWN_VIOLATIONS`; an entry that
no longer occurs fails the test too, so that the set only shrinks.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.architecture import (
    Finding,
    Module,
    build_index,
    imports,
    load_modules,
    private_access_findings,
    sizes,
)

MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 60

#: "module:qualname" -> why it may exceed the limit.
SIZE_ALLOWLIST: dict[str, str] = {}

# To be fixed in issue 9: findings of rules a and c (their line-free keys) that exist today.
KNOWN_VIOLATIONS: set[str] = set()

#: DESIGN.md's layers, bottom up. A module belongs to the layer of its longest matching
#: package prefix (``ddbstreams`` itself, which re-exports everything, matches exactly).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ddbstreams._errors", "ddbstreams._clock", "ddbstreams._tasks"),  # foundations
    ("ddbstreams.model", "ddbstreams._events"),  # 1. wire & model (events are facts)
    ("ddbstreams.transport",),  # the transport seam under the client
    ("ddbstreams.client",),  # 2. client
    ("ddbstreams.lineage",),  # 3. lineage
    ("ddbstreams.reading",),  # 4-5. shard and stream readers
    ("ddbstreams.consuming", "ddbstreams.state", "ddbstreams.coordination"),  # 6. consumers
    (  # 7. surfaces
        "ddbstreams",
        "ddbstreams.__main__",
        "ddbstreams.blocking",
        "ddbstreams.cli",
        "ddbstreams.local",
        "ddbstreams.metrics",
        "ddbstreams.testing",
    ),
)


def layer_of(module: str) -> int | None:
    matches = [
        (len(prefix), layer)
        for layer, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "ddbstreams" and module.startswith(prefix + "."))
    ]
    return max(matches)[1] if matches else None


def _calls_upward(module: str, target: str) -> bool:
    here, there = layer_of(module), layer_of(target)
    return here is not None and there is not None and there > here


def _imports_the_cli(module: str, target: str) -> bool:
    in_cli = module == "ddbstreams.cli" or module.startswith("ddbstreams.cli.")
    to_cli = target == "ddbstreams.cli" or target.startswith("ddbstreams.cli.")
    return to_cli and not in_cli and module != "ddbstreams.__main__"


def layering_findings(modules: dict[str, Module]) -> list[Finding]:
    rules: list[tuple[Callable[[str], bool], Callable[[str, str], bool], str]] = [
        (lambda m: True, _calls_upward, "nothing calls upward (a lower layer imports a higher)"),
        (lambda m: True, _imports_the_cli, "only ddbstreams.__main__ imports the CLI"),
    ]
    findings = []
    for module in modules.values():
        for imported in imports(module, modules):
            for applies, forbidden, rule in rules:
                if applies(module.name) and forbidden(module.name, imported.target):
                    what = imported.target + (f".{imported.name}" if imported.name else "")
                    findings.append(
                        Finding(
                            module.rel,
                            imported.line,
                            f"{module.name}: imports {imported.target}",
                            f"imports {what} -- {rule}",
                        )
                    )
    return sorted(findings)


def _all_findings() -> list[Finding]:
    modules = load_modules()
    return private_access_findings(build_index(modules)) + layering_findings(modules)


# --------------------------------------------------------------------------- the rules


def test_no_private_access_or_layering_violation() -> None:
    findings = _all_findings()
    new = [str(f) for f in findings if f.key not in KNOWN_VIOLATIONS]
    assert not new, "architecture violations (see this module's docstring):\n" + "\n".join(new)
    fixed = KNOWN_VIOLATIONS - {f.key for f in findings}
    assert not fixed, f"fixed: remove from KNOWN_VIOLATIONS: {sorted(fixed)}"


def _limit(kind: str) -> int:
    return MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES


def test_classes_and_functions_are_short() -> None:
    too_long = []
    over: set[str] = set()  # a key can occur more than once (``@overload`` stubs)
    for size in sizes(load_modules()):
        if size.lines > _limit(size.kind):
            over.add(size.key)
            if size.key not in SIZE_ALLOWLIST:
                too_long.append(
                    f"{size.path}:{size.line}: {size.kind} {size.key} has {size.lines} lines "
                    f"(limit {_limit(size.kind)})"
                )
    assert not too_long, "too long:\n" + "\n".join(too_long)
    stale = sorted(k for k in SIZE_ALLOWLIST if k not in over)
    assert not stale, f"gone or short enough now: remove from SIZE_ALLOWLIST: {stale}"


# --------------------------------------------------------------------------- the checker


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for name, text in {"ddbstreams/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return load_modules(tmp_path)


def _private_access(tmp_path: Path, files: dict[str, str]) -> list[str]:
    return [f.what for f in private_access_findings(build_index(_tree(tmp_path, files)))]


_LIB = """
    import asyncio

    _CACHE = {}

    def _helper(): ...

    class Store:
        __slots__ = ("_data",)
        def __init__(self, shared_with=None):
            self._data = shared_with._data if shared_with else {}  # same class: fine
        def __eq__(self, other):
            return self._data == other._data
        def _load(self): ...

    class Sub(Store):
        def copy(self, other):
            return other._load()  # inherited from Store: fine

    class Other:
        def peek(self, store):
            return store._data  # another class's underscore name

        def drive(self, loop: asyncio.AbstractEventLoop, store: Store):
            getattr(loop, "_data", None)  # annotated with a foreign type: not ours
            return getattr(store, "_data")  # annotated with a ddbstreams class

    def module_function(store):
        return store._load()  # module-level code of the defining module: fine
"""


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("from ddbstreams import _lib\nx = _lib.Store()\n", []),
        ("from ddbstreams._lib import Store\n", []),
        ("from ddbstreams._lib import _helper\n", ["private name of ddbstreams._lib"]),
        ("from ._lib import _CACHE\n", ["private name of ddbstreams._lib"]),
        ("from ddbstreams import _lib\n_lib._helper()\n", ["private name of module"]),
        ("import ddbstreams._lib as lib\nlib._CACHE\n", ["private name of module"]),
        ("import ddbstreams._lib\nddbstreams._lib._CACHE\n", ["private name of module"]),
        ("def f(store):\n    return store._load()\n", ["underscore attribute of"]),
        ("def f(proc):\n    return proc._popen\n", []),  # nobody in ddbstreams defines it
        ("class A:\n    def __repr__(self):\n        return self._anything\n", []),
        (
            "class A:\n    def f(self):\n        return super()._load()\n",
            [],
        ),
    ],
)
def test_private_access_rule_between_modules(
    tmp_path: Path, user: str, expected: list[str]
) -> None:
    found = _private_access(tmp_path, {"ddbstreams/_lib.py": _LIB, "ddbstreams/user.py": user})
    user_found = [w for w in found if not w.startswith("Other.")]
    assert len(user_found) == len(expected), found
    for what, fragment in zip(user_found, expected, strict=True):
        assert fragment in what


def test_private_access_rule_within_a_module(tmp_path: Path) -> None:
    found = _private_access(tmp_path, {"ddbstreams/_lib.py": _LIB})
    assert found == [
        "Other.peek: store._data -- underscore attribute of ddbstreams._lib.Store",
        "Other.drive: store._data -- underscore attribute of ddbstreams._lib.Store",
    ]


def test_layering_rule(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "ddbstreams/_errors.py": "",
            "ddbstreams/model/__init__.py": "",
            "ddbstreams/model/_types.py": "from ddbstreams._errors import E\n",
            "ddbstreams/model/_decode.py": "def f():\n    from ddbstreams.reading import R\n",
            "ddbstreams/reading/__init__.py": "from ddbstreams.model._types import M\n",
            "ddbstreams/reading/_r.py": "from ddbstreams import Consumer\n",
            "ddbstreams/consuming/_consumer.py": "from ddbstreams.cli._main import main\n",
            "ddbstreams/cli/_main.py": "from ddbstreams.cli import _render\n",
            "ddbstreams/__main__.py": "from ddbstreams.cli._main import main\n",
        },
    )
    assert [str(f) for f in layering_findings(modules)] == [
        "ddbstreams/consuming/_consumer.py:1: imports ddbstreams.cli._main.main -- "
        "nothing calls upward (a lower layer imports a higher)",
        "ddbstreams/consuming/_consumer.py:1: imports ddbstreams.cli._main.main -- "
        "only ddbstreams.__main__ imports the CLI",
        "ddbstreams/model/_decode.py:2: imports ddbstreams.reading.R -- "
        "nothing calls upward (a lower layer imports a higher)",
        "ddbstreams/reading/_r.py:1: imports ddbstreams.Consumer -- "
        "nothing calls upward (a lower layer imports a higher)",
    ]


if __name__ == "__main__":
    for finding in _all_findings():
        known = " (known)" if finding.key in KNOWN_VIOLATIONS else ""
        print(f"{finding}{known}")
    for size in sizes(load_modules()):
        if size.lines > _limit(size.kind):
            listed = " (allowlisted)" if size.key in SIZE_ALLOWLIST else ""
            print(f"{size.path}:{size.line}: {size.kind} {size.key}: {size.lines} lines{listed}")
