"""What a test cell observes of the learner's code, and how it reaches the judge.

A graded test cell calls the learner's code only through :func:`observe` (a
value) or :func:`attempt` (a value or an exception), each with a thunk::

    got = observe(lambda: top_k_filter(logits, 2))
    assert_tensor(got, expected, "top_k_filter(logits, 2)", hint="...")

The same cell runs in one of three modes:

``local`` (the default: a learner's notebook, the kit's own tests)
    the thunk runs and its value is returned; the checks compare and fail
    with their hints, as in any notebook.
``observe`` (inside the grading sandbox; ``RLHF_COURSE_OBSERVE=1``)
    the grader sends the kernel only the cell's *observation program*: its
    inputs and thunks, with every check, hint and expected value removed. Each
    thunk's outcome is encoded (:func:`encode`) and published as a display
    output of type :data:`MIME`. Nothing is decided here.
``judge`` (in the grader, outside the sandbox; see ``autograder.grading.judge``)
    the whole cell, hidden tests included, runs again with the kernel's
    outcomes replayed in order: thunks are never called, the learner's names
    are not even defined, and the checks decide.

So the learner's kernel can report what it computed but never decides
whether that earns points, and it never sees the expected values or hints of
the hidden tests. The encoding is plain JSON (tensors as base64 bytes), read
back by :func:`decode` without ``pickle``.

*Tripwires.* When the grader names library equivalents of a graded function
(``RLHF_COURSE_TRIPWIRES``, e.g. ``transformers.TopKLogitsWarper``), each
observation wraps those whose module is imported by then, and every outcome
lists those entered while its thunk ran; the judge refuses the points of a
function that handed its work to one. The kit's own callables are wired too,
and reported when the learner's code (not the kit) called them: the
instructor's provenance report shows them. A kernel can switch all of this
off, so what it reports may add a flag, never clear one.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["observe", "attempt", "Outcome", "Opaque", "ObservedError", "JUDGE", "MIME", "encode", "decode",
           "mode", "replaying", "type_of", "class_name"]

MIME = "application/vnd.rlhf-course.observation+json"
"""The display-data type that carries one outcome from the kernel to the grader."""
OBSERVE_ENV = "RLHF_COURSE_OBSERVE"
TRIPWIRES_ENV = "RLHF_COURSE_TRIPWIRES"
MAX_BYTES = 64 * 2**20
"""Largest encoded outcome; a bigger one is reported as too large (never sent)."""
MAX_DEPTH = 24

JUDGE = True
"""``if JUDGE:`` marks the part of a test cell that only the checking side runs (references,
expected values, hints). The grader removes such blocks from what the learner's kernel sees;
in a plain notebook they run like any other code."""


# ============================================================================ outcomes

@dataclass
class Opaque:
    """A value the encoding does not carry (a model, a trainer, ...): only its type is known, by
    name: ``type_name`` and the qualified names of its classes, most derived first (``mro``).
    :func:`rlhf_helpers.checks.assert_type` checks one against a class by those names, so the
    judge decides a type without the object."""

    type_name: str
    text: str = ""
    mro: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def class_name(cls: type) -> str:
    """``module.QualName`` of a class (``int`` for builtins): how :class:`Opaque` names classes."""
    mod = getattr(cls, "__module__", "") or ""
    qual = getattr(cls, "__qualname__", "") or getattr(cls, "__name__", "?")
    return qual if mod in ("builtins", "") else f"{mod}.{qual}"


def type_of(value: Any) -> Opaque:
    """What the judge needs to check ``value``'s type, and nothing else: an :class:`Opaque` naming
    its class and bases. For a test helper that reports plain data about an object (a
    ``DatasetDict`` is a ``dict``, so the object itself would be reported as one)."""
    cls = type(value)
    return Opaque(_claimed(cls), mro=tuple(_claimed(c) for c in cls.__mro__ if c is not object))


def _claimed(cls: type) -> str:
    """:func:`class_name`, unless a class names itself after another one: a class body may set
    ``__module__`` and ``__qualname__`` to anything (``trl.trainer.dpo_trainer.DPOTrainer``), so
    the name counts only when the module it names holds this very class under it. An impostor
    is reported as ``impostor of <name>``, which no expected type matches."""
    name = class_name(cls)
    mod, qual = getattr(cls, "__module__", "") or "", getattr(cls, "__qualname__", "") or ""
    if mod in ("builtins", "") or "<" in qual:
        return name
    try:
        found: Any = sys.modules.get(mod) or importlib.import_module(mod)
        for part in qual.split("."):
            found = getattr(found, part)
    except Exception:  # noqa: BLE001 - a name that leads nowhere claims nothing another class has
        return name
    return name if found is cls else f"impostor of {name}"


class ObservedError(Exception):
    """The learner's code raised while observed; ``ename`` is its exception type's name."""

    def __init__(self, ename: str, message: str, mro: list[str] | None = None):
        super().__init__(message)
        self.ename, self.message, self.mro = ename, message, list(mro or [ename])


@dataclass
class Outcome:
    """What :func:`attempt` saw: a value, or the names of a raised exception and its message."""

    value: Any = None
    raised: list[str] | None = None
    message: str = ""
    error: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.raised is None

    def raised_a(self, exc_type: type[BaseException]) -> bool:
        return self.raised is not None and exc_type.__name__ in self.raised


class HandedOff(AssertionError):
    """A graded function used the ready-made implementation of what it should compute."""


class MissingObservation(RuntimeError):
    """The judge needed an outcome that the learner's kernel never reported."""


# ============================================================================ encoding

def _opaque_body(value: Any) -> dict:
    known = value if isinstance(value, Opaque) else type_of(value)
    return {"$opaque": {"type": known.type_name, "mro": list(known.mro)}}


def encode(value: Any, _depth: int = 0) -> Any:
    """A JSON-able form of ``value``: plain data, tensors and arrays exactly, anything else by type."""
    if _depth > MAX_DEPTH:
        return {"$opaque": "nested too deeply"}
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) and type(value) is not str else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        v = float(value)
        return v if math.isfinite(v) else {"$float": repr(v)}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter) or value.layout != torch.strided:
            return _opaque_body(value)
        t = value.detach().to("cpu").contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        return {"$tensor": {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                            "requires_grad": bool(value.requires_grad), "data": base64.b64encode(raw).decode()}}
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        a = np.ascontiguousarray(value)
        return {"$ndarray": {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}}
    if np is not None and isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"$npscalar": {"dtype": value.dtype.str, "value": encode(value.item(), _depth + 1)}}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, _depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, _depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(v, _depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"$dict": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in value.items()]}
    if isinstance(value, range):
        return {"$range": [value.start, value.stop, value.step]}
    return _opaque_body(value)


_OPAQUE_TYPES: dict[str, type] = {}


def _opaque(type_name: str, mro: Any = None) -> Opaque:
    """An :class:`Opaque` whose own type is named like the learner's (so ``type(x).__name__``
    in a check's message says ``AlwaysEqual``, not ``Opaque``)."""
    type_name = type_name[:200]
    mro = [] if mro is None else mro
    if not isinstance(mro, list) or not all(isinstance(n, str) for n in mro):
        raise DecodeError("bad class names")
    names = tuple(n[:200] for n in mro[:64])
    cls = _OPAQUE_TYPES.get(type_name)
    if cls is None:
        module, _, name = type_name.rpartition(".")
        short = name if name.isidentifier() else "Unknown"
        cls = type(short, (Opaque,), {"__module__": module or "builtins", "__qualname__": short})
        if len(_OPAQUE_TYPES) < 1000:
            _OPAQUE_TYPES[type_name] = cls
    return cls(type_name, mro=names)


class DecodeError(ValueError):
    """An outcome that is not in the kit's encoding."""


def decode(data: Any, _depth: int = 0) -> Any:
    """The value :func:`encode` described. Strict: anything unexpected raises :class:`DecodeError`."""
    if _depth > MAX_DEPTH + 1:
        raise DecodeError("nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, _depth + 1) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise DecodeError(f"unexpected {type(data).__name__}")
    ((tag, body),) = data.items()
    if tag == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "$tuple" and isinstance(body, list):
        return tuple(decode(v, _depth + 1) for v in body)
    if tag == "$set" and isinstance(body, list):
        return {decode(v, _depth + 1) for v in body}
    if tag == "$dict" and isinstance(body, list):
        out = {}
        for item in body:
            if not isinstance(item, list) or len(item) != 2:
                raise DecodeError("bad dict item")
            out[decode(item[0], _depth + 1)] = decode(item[1], _depth + 1)
        return out
    if tag == "$range" and isinstance(body, list) and len(body) == 3 and all(type(x) is int for x in body):
        return range(*body)
    if tag == "$opaque" and isinstance(body, str):
        return _opaque(body)
    if tag == "$opaque" and isinstance(body, dict) and isinstance(body.get("type"), str):
        return _opaque(body["type"], body.get("mro", []))
    if tag == "$tensor" and isinstance(body, dict):
        return _decode_tensor(body)
    if tag == "$ndarray" and isinstance(body, dict):
        import numpy as np

        dtype = np.dtype(str(body["dtype"]))
        if dtype.kind not in "biufc":
            raise DecodeError("bad array dtype")
        raw = base64.b64decode(body["data"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape([int(s) for s in body["shape"]]).copy()
    if tag == "$npscalar" and isinstance(body, dict):
        import numpy as np

        dtype = np.dtype(str(body["dtype"]))
        if dtype.kind not in "biuf":
            raise DecodeError("bad scalar dtype")
        return dtype.type(decode(body["value"], _depth + 1))
    raise DecodeError(f"unknown tag {tag!r}")


def _decode_tensor(body: dict) -> Any:
    import torch

    name = str(body.get("dtype", ""))
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise DecodeError(f"unknown dtype {name!r}")
    shape = [int(s) for s in body.get("shape", [])]
    if any(s < 0 for s in shape):
        raise DecodeError("negative size")
    raw = bytearray(base64.b64decode(body.get("data", ""), validate=True))
    count = math.prod(shape)
    storage = torch.int16 if dtype == torch.bfloat16 else dtype
    itemsize = torch.empty((), dtype=storage).element_size()
    if len(raw) != count * itemsize:
        raise DecodeError("tensor data does not match its shape")
    t = (torch.frombuffer(raw, dtype=storage) if raw else torch.empty(0, dtype=storage)).reshape(shape)
    t = t.view(torch.bfloat16) if dtype == torch.bfloat16 else t.clone()
    if body.get("requires_grad") and t.is_floating_point():
        t.requires_grad_(True)
    return t


# ============================================================================ modes

_STATE: dict[str, Any] = {"mode": None, "queue": None, "index": 0, "graded": {}, "handed": {}, "wires": None}
_ACTIVE: list[set[str]] = []


def mode() -> str:
    """``local``, ``observe`` (inside the grading sandbox) or ``judge`` (in the grader)."""
    if _STATE["mode"] is None:
        _STATE["mode"] = "observe" if os.environ.get(OBSERVE_ENV) == "1" else "local"
    return _STATE["mode"]


@contextlib.contextmanager
def replaying(records: list[dict], graded: dict[str, list[str]] | None = None,
              handed: dict[str, str] | None = None) -> Iterator[None]:
    """Judge mode for one test cell: :func:`observe` and :func:`attempt` return ``records`` in order.

    ``graded`` maps each learner-written name to the library equivalents it must not use;
    ``handed`` maps names already found to use one (by reading their code) to the reason.
    """
    saved = dict(_STATE)
    _STATE.update(mode="judge", queue=list(records), index=0, graded=dict(graded or {}), handed=dict(handed or {}))
    try:
        yield
    finally:
        _STATE.clear()
        _STATE.update(saved)


def _thunk_names(fn: Callable) -> set[str]:
    """Global names a thunk (and functions nested in it, and the test's own helpers it calls)
    refers to: ``observe(lambda: _build(texts))`` observes what ``_build`` calls."""
    names: set[str] = set()
    space = getattr(fn, "__globals__", {}) or {}
    codes = [getattr(fn, "__code__", None)]
    seen: set[int] = set()
    while codes:
        code = codes.pop()
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
        for name in code.co_names:  # a helper the test cell defined (the judge runs the cell in its own namespace)
            helper = space.get(name)
            if callable(helper) and getattr(helper, "__module__", None) == space.get("__name__"):
                codes.append(getattr(helper, "__code__", None))
    return names


def _next_record(fn: Callable) -> dict:
    queue, i = _STATE["queue"], _STATE["index"]
    if i >= len(queue):
        raise MissingObservation(f"observation {i + 1} of this test was never reported by your notebook's run")
    _STATE["index"] = i + 1
    record = queue[i]
    used = set(record.get("used") or [])
    for name in sorted(_thunk_names(fn) & set(_STATE["graded"])):
        if name in _STATE["handed"]:
            raise HandedOff(_STATE["handed"][name])
        hits = sorted(used & set(_STATE["graded"][name]))
        if hits:
            raise HandedOff(f"{name} handed its work to {hits[0]}, the ready-made version of what it should "
                            f"compute; no points for it.\nHint: write {name} yourself, without {hits[0].rsplit('.', 1)[-1]}")
    return record


def _replay(fn: Callable) -> Outcome:
    record = _next_record(fn)
    if record.get("ok"):
        try:
            return Outcome(value=decode(record.get("value")))
        except DecodeError as exc:
            raise MissingObservation(f"observation {_STATE['index']} could not be read ({exc})") from None
    err = record.get("error") or {}
    mro = [str(n) for n in (err.get("mro") or [])][:32] or ["Exception"]
    message = str(err.get("message", ""))[:2000]
    return Outcome(raised=mro, message=message, error=ObservedError(mro[0], message, mro))


def observe(fn: Callable[[], Any]) -> Any:
    """Run ``fn()`` (the learner's code) and return its value, re-raising what it raises.

    In the grading sandbox the outcome is also reported to the grader; in the grader
    the outcome the learner's kernel reported is returned instead of calling ``fn``.
    """
    outcome = attempt(fn)
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


def attempt(fn: Callable[[], Any]) -> Outcome:
    """Run ``fn()`` and return an :class:`Outcome`: its value, or what it raised (never raises,
    except ``KeyboardInterrupt`` and ``SystemExit``)."""
    m = mode()
    if m == "judge":
        return _replay(fn)
    if m == "observe":
        _install_tripwires()
    used: set[str] = set()
    _ACTIVE.append(used)
    try:
        out = Outcome(value=fn())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the learner's error is the outcome
        names = [c.__name__ for c in type(exc).__mro__ if c not in (object, BaseException)]
        out = Outcome(raised=names, message=str(exc), error=exc)
    finally:
        _ACTIVE.remove(used)
    if m == "observe":
        _publish(out, used)
    return out


def _publish(out: Outcome, used: set[str]) -> None:
    if out.ok:
        try:
            body = encode(out.value)
            text = json.dumps(body, allow_nan=False)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            body, text = {"$opaque": f"unencodable ({type(exc).__name__})"}, ""
        if len(text) > MAX_BYTES:
            body = {"$opaque": "too large to report"}
        record = {"ok": True, "value": body}
    else:
        record = {"ok": False, "error": {"mro": out.raised, "message": out.message[:2000]}}
    record["used"] = sorted(used)
    from IPython.display import publish_display_data

    publish_display_data({MIME: record})


# ============================================================================ tripwires

def _resolve(path: str) -> tuple[Any, str] | None:
    """(owner, attribute) for a dotted path such as ``transformers.TopKLogitsWarper``
    or ``transformers.GenerationMixin.generate``; None when it does not resolve."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:-1]:
                owner = getattr(owner, name)
            getattr(owner, parts[-1])
        except AttributeError:
            return None
        return owner, parts[-1]
    return None


_KIT_DEPTH = [0]
"""How many wired kit callables are running: a kit callable is reported only when the learner's
code called it, not when the kit calls its own helpers."""


def _wrap(fn: Callable, label: str) -> Callable:
    import functools

    kit = label.startswith("rlhf_helpers.")

    @functools.wraps(fn)
    def tripwire(*args: Any, **kwargs: Any) -> Any:
        if not (kit and _KIT_DEPTH[0]):
            for used in _ACTIVE:
                used.add(label)
        if not kit:
            return fn(*args, **kwargs)
        _KIT_DEPTH[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _KIT_DEPTH[0] -= 1

    tripwire.__rlhf_tripwire__ = True  # type: ignore[attr-defined]
    return tripwire


def _wires() -> dict[str, bool]:
    if _STATE["wires"] is None:
        try:
            paths = json.loads(os.environ.get(TRIPWIRES_ENV, "[]"))
        except ValueError:
            paths = []
        _STATE["wires"] = {str(p): False for p in (paths if isinstance(paths, list) else [])}
    return _STATE["wires"]


def _wire(path: str) -> None:
    """Wrap the callable ``path`` names: ``module:Qual.name`` (where it is defined, found in
    ``sys.modules`` without importing anything) or a dotted path (imported modules only)."""
    if ":" in path:
        module, _, qual = path.partition(":")
        owner: Any = sys.modules.get(module)
        if owner is None:
            return
        parts = qual.split(".")
        try:
            for name in parts[:-1]:
                owner = getattr(owner, name)
            getattr(owner, parts[-1])
        except AttributeError:
            return
        attr, label = parts[-1], f"{module}.{qual}"
    else:
        found = _resolve(path)
        if found is None:
            return
        (owner, attr), label = found, path
    target = getattr(owner, attr)
    if isinstance(target, type):
        for method in ("__init__", "__call__"):
            inner = getattr(target, method, None)
            if callable(inner) and not getattr(inner, "__rlhf_tripwire__", False):
                with contextlib.suppress(TypeError, AttributeError):
                    setattr(target, method, _wrap(inner, label))
    elif callable(target) and not getattr(target, "__rlhf_tripwire__", False):
        with contextlib.suppress(TypeError, AttributeError):
            setattr(owner, attr, _wrap(target, label))


def _importing(name: str) -> bool:
    """``name``'s module is in ``sys.modules`` but still running its own code (or a parent's)."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        spec = getattr(sys.modules.get(".".join(parts[:i])), "__spec__", None)
        if getattr(spec, "_initializing", False):
            return True
    return False


def _install_tripwires(only: str | None = None) -> None:
    """Wrap each named equivalent whose module is already imported (never import one: TRL alone
    takes seconds). Called at every observation, and when a module that defines one is loaded
    (:class:`_Wiring`, with ``only`` that module), so a learner's reference taken before the
    first test is wired too. A module still being imported is left for later: reading a
    half-made package (torch, while its ``__init__`` runs) would break its import."""
    for path, done in list(_wires().items()):
        module = path.partition(":")[0] if ":" in path else path.split(".", 1)[0]
        if done or module not in sys.modules or (only is not None and module != only):
            continue
        if only is None and _importing(module):
            continue
        _STATE["wires"][path] = True  # a module done importing that lacks the name will not grow it
        try:
            _wire(path)
        except Exception:  # noqa: BLE001 - a library that breaks when read is not the learner's doing
            continue


class _Wiring:
    """An import hook: right after a module that defines a wired callable (``module:qual``) has
    run, wire it, before any other code can take a reference to the original."""

    def __init__(self, modules: set[str]):
        self.modules = modules

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.modules:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        run = getattr(spec.loader, "exec_module", None)
        if run is not None:
            def exec_module(module: Any, _run: Callable = run, _name: str = fullname) -> None:
                _run(module)
                _install_tripwires(only=_name)

            with contextlib.suppress(AttributeError, TypeError):
                spec.loader.exec_module = exec_module
        return spec


def arm() -> None:
    """In the grading sandbox, as the kernel starts: wire what is already imported and every
    wired callable's module as it is imported."""
    if mode() != "observe":
        return
    modules = {p.partition(":")[0] for p in _wires() if ":" in p}
    if modules and not any(isinstance(f, _Wiring) for f in sys.meta_path):
        sys.meta_path.insert(0, _Wiring(modules))
    _install_tripwires()


def load_ipython_extension(ipython: Any) -> None:  # noqa: ARG001 - IPython's extension protocol
    """``--IPKernelApp.extensions=['rlhf_helpers.observations']``: :func:`arm` at kernel start."""
    arm()
