"""What a learner's graded function relies on, with names resolved as Python resolves them.

A notebook is a sequence of code cells run top to bottom; every top-level
statement that binds a name (``def``, ``class``, ``import``, an assignment,
also inside a top-level ``if``/``try``/``with``/``for``) is a :class:`Binding`
at a position (cell, statement). :class:`Namespace` answers, for a graded
function, what its code really reaches when a test calls it:

* inside a function, parameters, locals, loop and comprehension variables are
  the function's own (``symtable`` decides, as the compiler does); only its
  free names are looked up, in the notebook as it stands when the test runs
  (the last binding before the test cell);
* decorators, default values, class bases and the right-hand side of an
  assignment are evaluated where they stand, so ``f = f`` or ``f =
  partial(g, 1)`` reach the binding *before* that line;
* helpers, aliases, decorators, a class's methods and module-level partials
  are followed transitively, down to imports, which end a path in a dotted
  name (``transformers.TopKLogitsWarper``, ``rlhf_helpers.kl.optimal_policy``).

The result, a :class:`Reach`, lists the notebook bindings the function relies
on (for the similarity report: a copy moved into a helper is still the
function's code), the dotted names it reaches through imports, the attribute
names it uses on other objects (``model.generate``) and the identifier-like
strings it holds (``getattr(m, "generate")``). :mod:`autograder.grading.judge` refuses
a graded function whose reach holds a ready-made equivalent;
:mod:`autograder.grading.provenance` reports the rest to the instructor.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from autograder.cells import DEFINITIONS

END = (10**9, 0)
"""A position after every cell (the notebook as it stands at its end)."""
_BUILTINS = frozenset(dir(builtins))


PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun", "debug")
"""Cell magics whose body is Python the kernel runs: read as that Python."""


def python_source(cell_source: str) -> str:
    """A code cell as Python (IPython's magics and shell escapes turned into calls; the body of a
    ``%%time``-like cell magic as the Python it is), or ``""``."""
    first, _, body = cell_source.lstrip().partition("\n")
    if first.startswith("%%") and first[2:].split(" ")[0] in PYTHON_CELL_MAGICS:
        cell_source = body
    plain = _plain_python(cell_source)
    if plain is not None:
        return plain
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        text = TransformerManager().transform_cell(cell_source)
    except Exception:  # noqa: BLE001 - without IPython, or a cell it cannot read: the text as it is
        text = cell_source
    try:
        ast.parse(text)
    except SyntaxError:
        return ""
    return text


def _plain_python(source: str) -> str | None:
    """``source`` as IPython's transforms would leave it, when it is plain Python already (they then
    only drop its leading blank lines and end it with a newline); None when it is not. Reading a
    whole kit module through IPython's tokenizer took most of a box's build."""
    lines = source.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line and not line.isspace()), 0)
    text = "".join(lines[first:])
    if not text.strip():
        return None
    text = text if text.endswith("\n") else text + "\n"
    try:
        ast.parse(text)
    except SyntaxError:
        return None
    return text


@dataclass
class Binding:
    """One top-level statement that binds ``name``: what the notebook holds under that name from
    ``pos`` on. ``node`` is the def/class/import/assignment statement (for a function that assigns
    a ``global``, the function)."""

    name: str
    pos: tuple[int, int]
    kind: str  # "def", "class", "import", "assign", "global"
    node: ast.AST
    source: str
    table: symtable.SymbolTable | None = field(default=None, repr=False)
    path: str | None = None  # imports: the dotted name bound ("transformers.TopKLogitsWarper")

    def segment(self) -> str:
        """The statement's own source text."""
        return ast.get_source_segment(self.source, self.node) or ""


@dataclass
class Reach:
    """What a name relies on, transitively (see the module's docstring)."""

    bindings: list[Binding] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    attrs: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    members: set[str] = field(default_factory=set)  # what the learner's own classes in reach define: methods,
    # fields (class-level names, NamedTuple/dataclass fields) and attributes their methods set on self
    unresolved: set[str] = field(default_factory=set)  # free names with no binding (and not builtins)

    def names(self) -> set[str]:
        """Every last component of a path, attribute name and string part: what a check by name sees.
        An attribute named like a member of the learner's own classes (``est.sem`` of their own
        NamedTuple, ``self.generate()``) is theirs, not the library's."""
        out = {p.rsplit(".", 1)[-1] for p in self.paths} | (self.attrs - self.members)
        for s in self.strings:
            out.update(s.split("."))
        return out


def _children(table: symtable.SymbolTable) -> Iterator[symtable.SymbolTable]:
    for child in table.get_children():
        yield child
        yield from _children(child)


def _table_for(module_table: symtable.SymbolTable, node: ast.AST) -> symtable.SymbolTable | None:
    name = getattr(node, "name", None)
    for child in module_table.get_children():
        if child.get_name() == name and child.get_lineno() == getattr(node, "lineno", -1):
            return child
    return None


def bound_here(stmt: ast.stmt) -> list[tuple[str, str, str | None]]:
    """(name, kind, import path) for each name a top-level statement binds."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [(stmt.name, "def", None)]
    if isinstance(stmt, ast.ClassDef):
        return [(stmt.name, "class", None)]
    if isinstance(stmt, ast.Import):
        out = []
        for a in stmt.names:
            if a.asname:
                out.append((a.asname, "import", a.name))
            else:  # import a.b.c binds a
                root = a.name.split(".")[0]
                out.append((root, "import", root))
        return out
    if isinstance(stmt, ast.ImportFrom):
        module = "." * stmt.level + (stmt.module or "")
        return [("*", "import", module) if a.name == "*" else (a.asname or a.name, "import", f"{module}.{a.name}")
                for a in stmt.names]
    targets: list[ast.AST] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and getattr(stmt, "value", None) is not None:
        targets = [stmt.target]
    elif isinstance(stmt, (ast.For, ast.AsyncFor)):
        targets = [stmt.target]
    elif isinstance(stmt, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in stmt.items if item.optional_vars is not None]
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return [(n, "assign", None) for n in names]


def _statements(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Top-level statements, including those inside top-level compound statements (not defs)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, DEFINITIONS):
            continue
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                yield from _statements(inner)
        for handler in getattr(stmt, "handlers", []) or []:
            yield from _statements(handler.body)


def _globals_assigned(table: symtable.SymbolTable) -> set[str]:
    names = {s.get_name() for s in table.get_symbols() if s.is_declared_global() and s.is_assigned()}
    for child in _children(table):
        names |= {s.get_name() for s in child.get_symbols() if s.is_declared_global() and s.is_assigned()}
    return names


def _global_reads(table: symtable.SymbolTable) -> set[str]:
    """Names a function (or class body) and every scope nested in it read from the module."""
    tables = [table, *_children(table)]
    return {s.get_name() for t in tables for s in t.get_symbols() if s.is_global() and s.is_referenced()}


def global_reads(source: str) -> set[str]:
    """The module-level names a piece of code reads: at its top level, and as free names of the
    functions, classes, lambdas and comprehensions in it (their own locals and parameters left out)."""
    table = symtable.symtable(source, "<code>", "exec")
    top = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    return top | {s.get_name() for t in _children(table) for s in t.get_symbols() if s.is_global() and s.is_referenced()}


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None when the root is not a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


REFLECTIVE = frozenset({"getattr", "setattr", "hasattr", "delattr", "import_module", "__import__", "attrgetter",
                        "methodcaller", "eval", "exec", "compile", "find_spec", "locate", "reload"})
"""Calls that take a name spelled as a string."""
NAMESPACES = frozenset({"modules", "__dict__", "globals", "vars", "locals", "__builtins__"})
"""Mappings of names: a string subscript of one of these names something (``sys.modules["x"]``)."""


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _identifier(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value.strip()
        if text and all(part.isidentifier() for part in text.split(".")):
            return text
    return None


def _strings(tree: ast.AST) -> set[str]:
    """Names spelled as strings where Python looks them up: the arguments of ``getattr``,
    ``import_module`` and the like, and subscripts of ``sys.modules``, ``__dict__``, ``globals()``.
    (A dict key such as ``{"sem": ...}`` is data, not a name.)"""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in REFLECTIVE:
            out.update(t for t in map(_identifier, [*node.args, *(k.value for k in node.keywords)]) if t)
        elif isinstance(node, ast.Subscript):
            base = node.value
            name = (_call_name(base) if isinstance(base, ast.Call) else base.attr if isinstance(base, ast.Attribute)
                    else base.id if isinstance(base, ast.Name) else "")
            text = _identifier(node.slice)
            if name in NAMESPACES and text:
                out.add(text)
    return out


class Namespace:
    """The top-level bindings of a notebook's code cells, in order (see the module's docstring).

    ``cells`` are the code cells' sources in notebook order; ``None`` stands for a cell whose
    code is not the learner's (a test cell): it binds nothing here but keeps its position."""

    def __init__(self, cells: list[str | None]):
        self.bindings: list[Binding] = []
        self.unreadable: list[int] = []
        for index, cell in enumerate(cells):
            if cell is None:
                continue
            source = python_source(cell)
            if not source:
                if cell.strip():
                    self.unreadable.append(index)
                continue
            tree = ast.parse(source)
            table = symtable.symtable(source, f"<cell {index}>", "exec")
            for number, stmt in enumerate(_statements(tree.body)):
                pos = (index, number)
                for name, kind, path in bound_here(stmt):
                    own = _table_for(table, stmt) if kind in ("def", "class") else None
                    self.bindings.append(Binding(name, pos, kind, stmt, source, own, path))
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own = _table_for(table, stmt)
                    for name in sorted(_globals_assigned(own) if own is not None else ()):
                        self.bindings.append(Binding(name, pos, "global", stmt, source, own))

    def lookup(self, name: str, before: tuple[int, int] = END) -> Binding | None:
        """The binding of ``name`` in force just before ``before`` (a star import as the last resort)."""
        found = star = None
        for b in self.bindings:
            if b.pos >= before:
                break
            if b.name == name:
                found = b
            elif b.name == "*":
                star = b
        if found is None and star is not None and name not in _BUILTINS:
            return Binding(name, star.pos, "import", star.node, star.source, path=f"{star.path}.{name}")
        return found

    def path_of(self, name: str, before: tuple[int, int], _depth: int = 0) -> str | None:
        """The dotted name ``name`` stands for at ``before``: an import, or an alias of one
        (``F = torch.nn.functional``); None otherwise."""
        b = self.lookup(name, before)
        if b is None or _depth > 20:
            return None
        if b.kind == "import":
            return b.path
        if b.kind == "assign" and isinstance(b.node, (ast.Assign, ast.AnnAssign)):
            chain = _chain(b.node.value) if b.node.value is not None else None
            if chain:
                root = self.path_of(chain[0], b.pos, _depth + 1)
                if root is not None:
                    return ".".join([root, *chain[1:]])
        return None

    def reach(self, name: str, at: tuple[int, int] = END) -> Reach:
        """What ``name``, as bound when code at ``at`` runs, relies on (see :class:`Reach`)."""
        out = Reach()
        todo: list[tuple[str, tuple[int, int]]] = [(name, at)]
        seen: set[int] = set()
        while todo:
            wanted, when = todo.pop()
            b = self.lookup(wanted, when)
            if b is None:
                if wanted not in _BUILTINS:
                    out.unresolved.add(wanted)
                continue
            if id(b) in seen:
                continue
            seen.add(id(b))
            out.bindings.append(b)
            todo += self._follow(b, at, out)
        return out

    def _follow(self, b: Binding, call_time: tuple[int, int], out: Reach) -> list[tuple[str, tuple[int, int]]]:
        """Record what binding ``b`` uses in ``out``; return the names it needs, with when they are looked up."""
        if b.kind == "import":
            if b.path:
                out.paths.add(b.path)
            return []
        node = b.node
        now: list[ast.AST] = []     # evaluated where the statement stands
        later: list[ast.AST] = []   # evaluated when the code is called (function bodies)
        reads_later: set[str] = set()
        reads_now: set[str] = set()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            now += node.decorator_list + [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
            later += node.body
            if b.table is not None:
                reads_later = _global_reads(b.table)
        elif isinstance(node, ast.ClassDef):
            now += node.decorator_list + node.bases + [k.value for k in node.keywords]
            for stmt in node.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.members.add(stmt.name)
                    out.members |= _set_on_self(stmt)
                    now += stmt.decorator_list + [d for d in stmt.args.defaults + stmt.args.kw_defaults if d is not None]
                    later += stmt.body
                else:
                    out.members |= {name for name, _kind, _path in bound_here(stmt)}
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        out.members.add(stmt.target.id)  # a field: sem: float
                    now.append(stmt)
            if b.table is not None:
                reads_later = _global_reads(b.table)
        else:
            value = getattr(node, "value", None) if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) else None
            if isinstance(node, (ast.For, ast.AsyncFor)):
                value = node.iter
            if isinstance(node, (ast.With, ast.AsyncWith)):
                now += [item.context_expr for item in node.items]
            if value is not None:
                now.append(value)
            if isinstance(node, ast.AugAssign):
                reads_now.add(b.name)
        for tree in now:
            reads_now |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            reads_now -= _comprehension_targets(tree)
        needs = [(n, b.pos) for n in sorted(reads_now)] + [(n, call_time) for n in sorted(reads_later - reads_now)]
        for trees, names, when in ((now, reads_now, b.pos), (later, reads_later, call_time)):
            self._uses(ast.Module(body=[t if isinstance(t, ast.stmt) else ast.Expr(t) for t in trees], type_ignores=[]),
                       names, when, out)
        return needs

    def _uses(self, tree: ast.AST, module_names: set[str], when: tuple[int, int], out: Reach) -> None:
        """Attribute chains, attribute names and strings in ``tree``; a chain rooted at a module-level
        name that stands for an import becomes a dotted path."""
        out.strings |= _strings(tree)
        local: dict[str, str] = {}  # an import inside a function: what it names is used, under its local name
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name, _kind, path in bound_here(node):
                    if path and not path.startswith("."):
                        out.paths.add(path)
                        local[name] = path
        inner: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            cur = node.value
            while isinstance(cur, ast.Attribute):  # the outermost attribute of a chain is seen first
                inner.add(id(cur))
                cur = cur.value
            chain = _chain(node)
            root = self.path_of(chain[0], when) if chain and chain[0] in module_names else \
                local.get(chain[0]) if chain else None
            if root is not None:
                out.paths.add(".".join([root, *chain[1:]]))
            else:
                parts = chain[1:] if chain else [node.attr]
                if not chain:  # x().a.b: every attribute of the chain
                    parts, cur = [], node
                    while isinstance(cur, ast.Attribute):
                        parts.append(cur.attr)
                        cur = cur.value
                out.attrs.update(parts)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in module_names:
                path = self.path_of(node.id, when)
                if path is not None:
                    out.paths.add(path)


def _comprehension_targets(tree: ast.AST) -> set[str]:
    """Names bound inside an expression's own scopes: comprehension variables and lambda parameters."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            a = node.args
            names |= {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x is not None}
    return names


def _set_on_self(method: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Attributes a method sets on its first parameter (``self.sem = ...``, ``cls.cache = ...``)."""
    params = method.args.posonlyargs + method.args.args
    if not params:
        return set()
    me = params[0].arg
    return {n.attr for n in ast.walk(method) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
            and isinstance(n.value, ast.Name) and n.value.id == me}
