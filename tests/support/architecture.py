"""Static analysis of the ddbstreams source tree for tests/unit/test_architecture.py.

Parses every module under ``src/ddbstreams`` with :mod:`ast`; nothing of the package is
imported. The rules themselves (and their allowlists) live in the test module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "ddbstreams"
SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src"


def is_private(name: str) -> bool:
    """``_name`` (and ``__name`` without trailing dunder), not ``__dunder__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True, order=True)
class Finding:
    """One rule broken at one place. ``key`` is line-free, for the allowlists."""

    path: str  # relative to src/, e.g. "ddbstreams/_cli.py"
    line: int
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


@dataclass
class ClassInfo:
    module: str
    qualname: str
    name: str
    base_names: list[str]
    attrs: set[str] = field(default_factory=set)


@dataclass
class Module:
    name: str  # dotted, e.g. "ddbstreams.reading._reader"
    path: Path
    tree: ast.Module
    is_package: bool
    root: Path

    @property
    def rel(self) -> str:
        return self.path.relative_to(self.root).as_posix()

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def load_modules(root: Path = SOURCE_ROOT) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, tree, is_package, root)
    return modules


# --------------------------------------------------------------------------- imports


@dataclass(frozen=True)
class Import:
    """One imported name: ``target`` is the ddbstreams module it resolves to."""

    line: int
    target: str
    name: str | None  # the name taken from ``target`` (from-import of a non-module), or None


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: Module, modules: dict[str, Module]) -> Iterator[Import]:
    """Every import of a ddbstreams module anywhere in ``module`` (lazy ones included)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield Import(node.lineno, alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, node)
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    yield Import(node.lineno, submodule, None)
                else:
                    yield Import(node.lineno, source, alias.name)


def _module_aliases(module: Module, modules: dict[str, Module]) -> dict[str, str]:
    """Local names bound to a ddbstreams module: ``import ddbstreams._x as y``,
    ``from ddbstreams import _x``, ``import ddbstreams`` (binds ``ddbstreams``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[alias.name.partition(".")[0]] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(module, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    return aliases


# --------------------------------------------------------------------------- definitions


def _self_attr_targets(node: ast.AST) -> Iterator[str]:
    """Names assigned as ``self.x = ...`` / ``cls.x = ...`` or set with
    ``object.__setattr__(self, "x", ...)`` anywhere inside ``node``."""
    for sub in ast.walk(node):
        targets: list[ast.expr] = []
        if isinstance(sub, ast.Assign):
            targets = list(sub.targets)
        elif isinstance(sub, ast.AugAssign | ast.AnnAssign):
            targets = [sub.target]
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr == "__setattr__"
            and len(sub.args) >= 2
            and isinstance(sub.args[1], ast.Constant)
            and isinstance(sub.args[1].value, str)
        ):
            yield sub.args[1].value
        for target in targets:
            for t in ast.walk(target):
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id in ("self", "cls")
                ):
                    yield t.attr


def _class_attrs(node: ast.ClassDef) -> set[str]:
    attrs: set[str] = set()
    for stmt in node.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            attrs.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                attrs.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in stmt.targets):
                attrs.update(
                    c.value
                    for c in ast.walk(stmt.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            attrs.add(stmt.target.id)
    attrs.update(_self_attr_targets(node))
    return attrs


def _base_name(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Subscript):  # Generic[T], Base[int]
        expr = expr.value
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def _walk_defs(
    body: list[ast.stmt], prefix: str
) -> Iterator[tuple[str, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]]:
    for stmt in body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = f"{prefix}{stmt.name}"
            yield qualname, stmt
            yield from _walk_defs(stmt.body, qualname + ".")
        elif isinstance(stmt, ast.If | ast.Try | ast.With | ast.For | ast.While):
            # Definitions under `if TYPE_CHECKING:`, `try: ... except ImportError:` etc.
            for block in ("body", "orelse", "finalbody", "handlers"):
                for part in getattr(stmt, block, []):
                    inner = part.body if isinstance(part, ast.ExceptHandler) else [part]
                    yield from _walk_defs(inner, prefix)


def _module_level_names(module: Module) -> set[str]:
    names: set[str] = set()
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


@dataclass
class Index:
    modules: dict[str, Module]
    classes: dict[tuple[str, str], ClassInfo]  # (module, qualname)
    #: private name -> who defines it: ("class", module, qualname) or ("module", module, "")
    definers: dict[str, set[tuple[str, str, str]]]
    by_simple_name: dict[str, list[ClassInfo]]

    def lineage(self, cls: ClassInfo) -> set[tuple[str, str]]:
        """``cls`` and its ddbstreams ancestors (bases matched by class name)."""
        seen: set[tuple[str, str]] = set()
        todo = [cls]
        while todo:
            current = todo.pop()
            key = (current.module, current.qualname)
            if key in seen:
                continue
            seen.add(key)
            for base in current.base_names:
                todo.extend(self.by_simple_name.get(base, []))
        return seen


def build_index(modules: dict[str, Module]) -> Index:
    classes: dict[tuple[str, str], ClassInfo] = {}
    definers: dict[str, set[tuple[str, str, str]]] = {}
    by_simple_name: dict[str, list[ClassInfo]] = {}
    for module in modules.values():
        for name in _module_level_names(module):
            if is_private(name):
                definers.setdefault(name, set()).add(("module", module.name, ""))
        for qualname, node in _walk_defs(module.tree.body, ""):
            if not isinstance(node, ast.ClassDef):
                continue
            info = ClassInfo(
                module.name,
                qualname,
                node.name,
                [b for b in map(_base_name, node.bases) if b is not None],
                _class_attrs(node),
            )
            classes[(module.name, qualname)] = info
            by_simple_name.setdefault(node.name, []).append(info)
            for attr in info.attrs:
                if is_private(attr):
                    definers.setdefault(attr, set()).add(("class", module.name, qualname))
    return Index(modules, classes, definers, by_simple_name)


# --------------------------------------------------------------------------- rule a


def _describe(definers: set[tuple[str, str, str]]) -> str:
    return ", ".join(
        sorted(f"{m}.{q}" if kind == "class" else f"module {m}" for kind, m, q in definers)
    )


class _PrivateAccessVisitor(ast.NodeVisitor):
    def __init__(self, index: Index, module: Module) -> None:
        self.index = index
        self.module = module
        self.aliases = _module_aliases(module, index.modules)
        self.scope: list[tuple[str, ClassInfo | None]] = []  # (name, class if a class)
        self.annotations: list[dict[str, ast.expr]] = []  # parameters of enclosing functions
        self.findings: list[Finding] = []

    # -- scopes

    def _qualname(self) -> str:
        return ".".join(name for name, _ in self.scope) or "<module>"

    def _enclosing_classes(self) -> list[ClassInfo]:
        return [cls for _, cls in self.scope if cls is not None]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        qualname = ".".join([*(n for n, _ in self.scope), node.name])
        self.scope.append((node.name, self.index.classes.get((self.module.name, qualname))))
        self.generic_visit(node)
        self.scope.pop()

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append((node.name, None))
        arguments = node.args
        params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        self.annotations.append({a.arg: a.annotation for a in params if a.annotation})
        self.generic_visit(node)
        self.annotations.pop()
        self.scope.pop()

    def _is_foreign(self, obj: ast.expr) -> bool:
        """Whether ``obj`` is a parameter annotated with types none of which is a ddbstreams
        class (``loop: asyncio.AbstractEventLoop``): its underscore names are not ours."""
        if not isinstance(obj, ast.Name):
            return False
        for scope in reversed(self.annotations):
            if obj.id in scope:
                annotation = scope[obj.id]
                if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
                    annotation = ast.parse(annotation.value, mode="eval").body
                names = {
                    n.id if isinstance(n, ast.Name) else n.attr
                    for n in ast.walk(annotation)
                    if isinstance(n, ast.Name | ast.Attribute)
                }
                return not names & self.index.by_simple_name.keys()
        return False

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    # -- accesses

    def _module_of(self, expr: ast.expr) -> str | None:
        """The ddbstreams module ``expr`` names (``alias`` or ``ddbstreams._x``), if any."""
        if isinstance(expr, ast.Name):
            return self.aliases.get(expr.id)
        if isinstance(expr, ast.Attribute):
            parent = self._module_of(expr.value)
            if parent is not None and f"{parent}.{expr.attr}" in self.index.modules:
                return f"{parent}.{expr.attr}"
        return None

    def _report(self, node: ast.AST, owner: str, attr: str, what: str) -> None:
        where = self._qualname()
        self.findings.append(
            Finding(
                self.module.rel,
                getattr(node, "lineno", 0),
                f"{self.module.name}:{where}: {owner}.{attr}",
                f"{where}: {owner}.{attr} -- {what}",
            )
        )

    def _check(self, node: ast.AST, obj: ast.expr, attr: str) -> None:
        if not is_private(attr):
            return
        if isinstance(obj, ast.Name) and obj.id in ("self", "cls"):
            return
        if isinstance(obj, ast.Call) and isinstance(obj.func, ast.Name) and obj.func.id == "super":
            return
        owner = ast.unparse(obj)
        target = self._module_of(obj)
        if target is not None:
            if f"{target}.{attr}" in self.index.modules or target == self.module.name:
                return  # a private submodule, or this module's own name
            self._report(node, owner, attr, f"private name of module {target}")
            return
        definers = self.index.definers.get(attr)
        if not definers or self._is_foreign(obj):
            return  # not a ddbstreams name: a stdlib or third-party object's business
        enclosing = self._enclosing_classes()
        allowed: set[tuple[str, str, str]] = set()
        for cls in enclosing:
            allowed.update(("class", m, q) for m, q in self.index.lineage(cls))
        if not enclosing:
            # Module-level code and functions may touch what their own module defines.
            allowed.update(d for d in definers if d[1] == self.module.name)
        if definers & allowed:
            return
        self._report(node, owner, attr, f"underscore attribute of {_describe(definers)}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            self._check(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _resolve_from(self.module, node)
        if source == PACKAGE or source.startswith(PACKAGE + "."):
            for alias in node.names:
                if is_private(alias.name) and f"{source}.{alias.name}" not in self.index.modules:
                    self.findings.append(
                        Finding(
                            self.module.rel,
                            node.lineno,
                            f"{self.module.name}: from {source} import {alias.name}",
                            f"from {source} import {alias.name} -- private name of {source}",
                        )
                    )


def private_access_findings(index: Index) -> list[Finding]:
    findings: list[Finding] = []
    for module in index.modules.values():
        visitor = _PrivateAccessVisitor(index, module)
        visitor.visit(module.tree)
        findings.extend(visitor.findings)
    return sorted(findings)


# --------------------------------------------------------------------------- rule b


@dataclass(frozen=True)
class Size:
    key: str  # "module:qualname"
    kind: str  # "class" or "function"
    lines: int
    path: str
    line: int


def sizes(modules: dict[str, Module]) -> Iterator[Size]:
    """Every class and function (methods and nested functions included), with its length
    from its ``class``/``def`` line to its last line (decorators not counted)."""
    for module in modules.values():
        for qualname, node in _walk_defs(module.tree.body, ""):
            end = node.end_lineno or node.lineno
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            yield Size(
                f"{module.name}:{qualname}", kind, end - node.lineno + 1, module.rel, node.lineno
            )
