"""What each graded function relied on, for the instructor: the provenance report.

For every submission and graded function, :func:`provenance` lists

* the kit callables (``rlhf_helpers...``) and library callables its code refers to, statically
  and transitively (its helpers, aliases, decorators; :mod:`autograder.grading.references`);
* the kit callables that ran while its observations ran, *as reported by the learner's kernel*
  (``ran``): evidence the kernel could have switched off, so it may add a flag, never clear one.

and raises *flags* only for what an instructor should look at:

* a graded function that relies on a kit callable the lab does not hand out (the helpers a lab
  gives the learner, such as padding or log-prob utilities, are the ones its own cells use);
* code the learner wrote that reaches into the grading machinery: the observation module, a
  ``__wrapped__``, ``sys.modules``, builtins, a class's ``__module__``, or a name built from
  strings for ``getattr``/``importlib``/``exec``/``eval`` (:func:`machinery_flags`).

Copies are flagged by :mod:`autograder.grading.similarity`. Nothing here takes a point away: the
instructor decides. What is refused outright is refused by the judge (ready-made equivalents,
the kit's own answers) and by the box (:mod:`autograder.grading.answer_key`).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field

from autograder.grading.references import END, Namespace, python_source

KIT = "rlhf_helpers"
MACHINERY_MODULES = ("rlhf_helpers.observations", "autograder", "nbgrader")
"""Dotted names whose use in the learner's code reaches into the grading machinery."""
MACHINERY_NAMES = frozenset({"_STATE", "_ACTIVE", "_install_tripwires", "_publish", "_next_record", "_replay",
                             "__rlhf_tripwire__", "publish_display_data", "__wrapped__", "__globals__", "__closure__",
                             "__code__", "__dict__", "__subclasses__", "__builtins__", "_KIT_DEPTH", "_KL_REGISTRY",
                             # frames reached through an exception or a generator: the test that called it
                             "__traceback__", "tb_frame", "tb_next", "f_back", "f_locals", "f_globals", "gi_frame",
                             "cr_frame", "ag_frame"})
"""Attribute or variable names that only the grading machinery, or code that reaches around it, uses."""
INTROSPECTION_MODULES = ("gc", "ctypes", "builtins", "importlib", "marshal", "dis")
"""Modules that let code reach objects by other ways than their names."""
DYNAMIC_CALLS = frozenset({"__import__", "import_module", "find_spec", "spec_from_file_location", "module_from_spec",
                           "exec_module", "vars", "globals", "register_forward_hook", "register_forward_pre_hook",
                           "register_full_backward_hook", "register_hook"})
"""Calls that reach modules or namespaces dynamically, or change what a model computes without its weights."""
FRAME_CALLS = ("inspect.stack", "inspect.currentframe", "inspect.getframeinfo", "inspect.getouterframes",
               "inspect.unwrap", "inspect.getmembers", "inspect.getsource", "inspect.getsourcelines",
               "inspect.findsource", "inspect.getclosurevars", "sys._getframe", "sys.exc_info", "sys.exception",
               "traceback.walk_stack", "traceback.walk_tb", "traceback.extract_stack", "traceback.extract_tb")
"""Calls that read the code or frames around them (the test that calls the learner's function)."""


@dataclass
class FunctionProvenance:
    """What one graded function relied on (see the module's docstring)."""

    kit: list[str] = field(default_factory=list)
    library: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def _callables(paths: set[str]) -> tuple[list[str], list[str]]:
    kit = sorted(p for p in paths if p.split(".")[0] == KIT and p.count(".") >= 2)
    library = sorted(p for p in paths if p.split(".")[0] != KIT and "." in p)
    return kit, library


def _handed(path: str, handed_out: set[tuple[str, str]]) -> bool:
    parts = path.split(".")
    return (parts[1], parts[2]) in handed_out or (parts[1], "*") in handed_out


def provenance(cells: list[tuple[str, bool]], names: list[str], first_tests: dict[str, int],
               handed_out: set[tuple[str, str]], ran: dict[str, set[str]] | None = None) -> dict[str, FunctionProvenance]:
    """Graded name -> what it relied on. ``cells``: (source, is_test) in notebook order;
    ``first_tests``: the first test cell of each name; ``handed_out``: (kit module, name) the
    lab's own cells use (``*``: a whole module); ``ran``: kit callables the kernel reported for
    each name's observations."""
    namespace = Namespace([None if is_test else source for source, is_test in cells])
    out: dict[str, FunctionProvenance] = {}
    for name in names:
        at = (first_tests[name], 0) if name in first_tests else END
        if namespace.lookup(name, at) is None:
            continue
        reach = namespace.reach(name, at)
        kit, library = _callables(reach.paths)
        info = FunctionProvenance(kit=kit, library=library, ran=sorted((ran or {}).get(name, set())))
        for path in kit:
            if not _handed(path, handed_out):
                info.flags.append(f"{name} relies on {path}, which the lab does not hand out")
        for path in info.ran:
            if path.split(".")[0] == KIT and not _handed(path, handed_out) and path not in kit:
                info.flags.append(f"{name} ran {path}, which the lab does not hand out (reported by the kernel)")
        table = max((_literal_table(b.node) for b in reach.bindings if b.kind != "import"), default=0)
        if table >= TABLE_AT:
            info.flags.append(f"{name} holds a table of {table} literal values (answers looked up, not computed?)")
        packed = _string_table([b.node for b in reach.bindings if b.kind != "import"])
        if packed >= STRING_TABLE_AT:
            info.flags.append(f"{name} parses a table of {packed} characters out of a string "
                              "(answers looked up, not computed?)")
        out[name] = info
    return out


TABLE_AT = 24
"""A graded function whose code holds a literal container of this many constants is flagged."""
STRING_TABLE_AT = 200
"""A graded function whose code parses a string literal this long into data is flagged."""
_PARSERS = frozenset({"loads", "literal_eval", "eval", "split", "splitlines", "rsplit", "findall", "fromstring",
                      "load", "reader", "b64decode", "decompress", "partition"})
"""Calls that turn one string into many values: a table kept in a string literal goes through one."""


def _string_table(nodes: list[ast.AST]) -> int:
    """The longest string literal (or concatenation of literals) in the code of ``nodes`` that a parser
    reads: an argument of ``json.loads``/``ast.literal_eval``/``eval``/... or the string a ``.split()``
    is called on, directly or through a name bound to it (``TABLE = "..."`` then ``json.loads(TABLE)``)."""
    def literal_length(n: ast.AST) -> int:
        if isinstance(n, ast.Constant) and isinstance(n.value, (str, bytes)):
            return len(n.value)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            return literal_length(n.left) + literal_length(n.right)
        return 0

    walked = [n for node in nodes for n in ast.walk(node)]
    literals = {t.id: literal_length(n.value) for n in walked if isinstance(n, ast.Assign) and literal_length(n.value)
                for t in n.targets if isinstance(t, ast.Name)}

    def length(n: ast.AST) -> int:
        return literals.get(n.id, 0) if isinstance(n, ast.Name) else literal_length(n)

    best = 0
    for n in walked:
        if isinstance(n, ast.Call):
            called = n.func.id if isinstance(n.func, ast.Name) else n.func.attr if isinstance(n.func, ast.Attribute) else ""
            if called in _PARSERS:
                best = max([best, *(length(a) for a in n.args)])
                if isinstance(n.func, ast.Attribute):
                    best = max(best, length(n.func.value))
    return best


def _literal_table(node: ast.AST) -> int:
    """The most constants in one literal container (dict, list, tuple, set) in ``node``'s code."""
    best = 0
    for n in ast.walk(node):
        if isinstance(n, (ast.Dict, ast.List, ast.Tuple, ast.Set)):
            count = sum(1 for c in ast.walk(n) if isinstance(c, ast.Constant))
            if all(isinstance(c, (ast.Constant, ast.Dict, ast.List, ast.Tuple, ast.Set, ast.UnaryOp, ast.Call, ast.Name,
                                  ast.Load, ast.USub, ast.keyword)) for c in ast.walk(n)):
                best = max(best, count)
    return best


def machinery_flags(learner_cells: list[tuple[int, str]]) -> list[str]:
    """Flags for learner-written code (``(cell index, source)``) that reaches into the grading
    machinery or builds names from strings (see the module's docstring)."""
    found: list[str] = []
    trees = [(index, ast.parse(text)) for index, text in ((i, python_source(s)) for i, s in learner_cells) if text]
    imported = {(a.asname or a.name).split(".")[0] for _, tree in trees for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    kit = {KIT} | {a.asname or a.name.split(".")[0] for _, tree in trees for node in ast.walk(tree)
                   if isinstance(node, (ast.Import, ast.ImportFrom)) and _from_kit(node) for a in node.names}
    for index, tree in trees:
        for line, what in _machinery(tree, imported, kit):
            entry = f"cell {index} line {line}: {what}"
            if entry not in found:
                found.append(entry)
    return found


_NAME_ARGUMENT = {"getattr": 1, "setattr": 1, "hasattr": 1, "delattr": 1, "import_module": 0, "__import__": 0,
                  "attrgetter": 0, "methodcaller": 0, "find_spec": 0, "locate": 0}
"""Where a reflective call takes the name it looks up."""


def _machinery(tree: ast.AST, imported: set[str], kit: set[str] = frozenset()) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):  # a class that claims another module or name for itself
            for stmt in node.body:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in ("__module__", "__qualname__", "__name__"):
                        out.append((stmt.lineno, f"class {node.name} sets its own {t.id}"))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            names = []
        hit = next((n for n in names if n.startswith(MACHINERY_MODULES) or n.rsplit(".", 1)[-1] in MACHINERY_NAMES
                    or n.split(".")[0] in INTROSPECTION_MODULES), None)
        if hit:
            out.append((line, f"imports {hit}"))
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)) and \
                ast.unparse(node.value).split(".")[0] in kit:
            out.append((line, f"changes the kit: {ast.unparse(node)}"))
        elif isinstance(node, ast.Attribute) and node.attr in MACHINERY_NAMES:
            out.append((line, f"uses .{node.attr}"))
        elif isinstance(node, ast.Name) and node.id in MACHINERY_NAMES:
            out.append((line, f"uses {node.id}"))
        elif isinstance(node, ast.Attribute) and node.attr == "modules" and ast.unparse(node.value) == "sys":
            out.append((line, "uses sys.modules"))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)) and (
                node.attr in ("__module__", "__qualname__", "__class__", "__code__", "__globals__")
                or ast.unparse(node.value).split(".")[0] in ("builtins", "__builtins__")):
            out.append((line, f"assigns {ast.unparse(node)}"))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)) and (
                ast.unparse(node.value) in ("globals()", "__builtins__", "vars()", "builtins.__dict__")):
            out.append((line, f"assigns {ast.unparse(node.value)}[...]"))
        elif isinstance(node, ast.Call):
            called = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else ""
            where = _NAME_ARGUMENT.get(called)
            if called in ("exec", "eval", "compile") and isinstance(node.func, ast.Name):
                out.append((line, f"calls {called}()"))
            elif called in DYNAMIC_CALLS or ast.unparse(node.func) in FRAME_CALLS:
                out.append((line, f"calls {ast.unparse(node.func)}()"))
            elif where is not None and len(node.args) > where and not isinstance(node.args[where], ast.Constant) and (
                    where == 0 or _is_module(node.args[0], imported) or _built(node.args[where])):
                out.append((line, f"calls {called}() with a name built at run time"))
            elif called in ("setattr", "delattr") and node.args and ast.unparse(node.args[0]).split(".")[0] in kit:
                out.append((line, f"changes the kit: {called}({ast.unparse(node.args[0])}, ...)"))
            elif called in ("setattr", "delattr") and node.args and \
                    ast.unparse(node.args[0]).split(".")[0] in ("builtins", "__builtins__"):
                out.append((line, f"calls {called}() on builtins"))
    return out


def _built(node: ast.AST) -> bool:
    """A string put together from pieces (``"heap" + "q"``, an f-string, ``"".join(...)``)."""
    if isinstance(node, ast.BinOp):
        return any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(node))
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
        "join", "replace", "format", "decode", "lower", "upper")


def _is_module(node: ast.AST, imported: set[str]) -> bool:
    """An expression that may stand for a module: a name bound by an import, an attribute of one,
    a dynamic import, or an entry of ``sys.modules``."""
    root = node
    while isinstance(root, (ast.Attribute, ast.Subscript)):
        root = root.value
    if isinstance(root, ast.Call):
        return any(isinstance(n, ast.Name) and n.id in ("__import__", "import_module") or
                   isinstance(n, ast.Attribute) and n.attr == "import_module" for n in ast.walk(root.func))
    return isinstance(root, ast.Name) and root.id in imported | {"sys", "builtins", "__builtins__"}


def _from_kit(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == KIT
    return any(a.name.split(".")[0] == KIT for a in node.names)


def as_data(found: dict[str, FunctionProvenance], machinery: list[str]) -> dict:
    """The provenance of one submission as plain data (a grading record keeps it)."""
    return {"functions": {name: asdict(info) for name, info in found.items()}, "machinery": list(machinery)}


def flags_of(data: dict) -> list[str]:
    """The flags of one submission's provenance (:func:`as_data`), for grades.csv."""
    out = [f for info in (data.get("functions") or {}).values() for f in info.get("flags", [])]
    out += [f"reaches into the grading machinery ({m})" for m in data.get("machinery", [])[:5]]
    if len(data.get("machinery", [])) > 5:
        out.append(f"... and {len(data['machinery']) - 5} more places that reach into the grading machinery")
    return out


REPORT_CSV = "provenance.csv"
REPORT_HTML = "provenance.html"


def write_report(out, records) -> None:
    """``provenance.csv`` (one row per submission and graded function) and ``provenance.html``
    (the same, lab by lab, flagged rows first) in the grading folder ``out``."""
    import csv
    import html
    import os
    from pathlib import Path

    rows = []
    for r in records:
        data = r.provenance or {}
        machinery = "; ".join(data.get("machinery", []))
        for name, info in sorted((data.get("functions") or {}).items()):
            rows.append({"lab_id": r.lab_id, "student_id": r.student_id, "function": name,
                         "kit": " ".join(info.get("kit", [])), "library": " ".join(info.get("library", [])),
                         "ran (reported by the kernel)": " ".join(info.get("ran", [])),
                         "flags": "; ".join(info.get("flags", [])), "machinery": machinery})
    out = Path(out)
    header = ["lab_id", "student_id", "function", "kit", "library", "ran (reported by the kernel)", "flags", "machinery"]
    tmp = out / (REPORT_CSV + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(sorted(rows, key=lambda x: (x["lab_id"], x["student_id"], x["function"])))
    os.replace(tmp, out / REPORT_CSV)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Provenance</title><style>"
             "body{font-family:sans-serif} td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;font-size:13px}"
             "table{border-collapse:collapse;margin-bottom:2em} tr.flag{background:#fff3cd}</style></head><body>",
             "<h1>What each graded function relied on</h1><p>Static: what its code refers to, with its helpers. "
             "<i>Ran</i>: kit callables the learner's kernel reported calling while the tests observed the function "
             "(the kernel can switch this off: evidence, never proof of innocence). Flags are for you to look at; "
             "they cost no points.</p>"]
    for lab in sorted({x["lab_id"] for x in rows}):
        mine = sorted((x for x in rows if x["lab_id"] == lab), key=lambda x: (not (x["flags"] or x["machinery"]),
                                                                               x["student_id"], x["function"]))
        parts.append(f"<h2>{html.escape(lab)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header[1:])
                     + "</tr>")
        for x in mine:
            cls = " class='flag'" if x["flags"] or x["machinery"] else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(x[h])}</td>" for h in header[1:]) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    (out / REPORT_HTML).write_text("".join(parts), encoding="utf-8")
