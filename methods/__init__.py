"""Method registry: `methods.get(name)`, `methods.available()`, `methods.build(name, overrides)`.

A method is a frozen dataclass subclassing `rlvr.methods.base.Method`, registered by name with
`@methods.register("name")`. `build` turns a name and a dict of overrides (the `method:` block of a
training config) into an instance, rejecting unknown fields and ill-typed values with a ValueError that
names the field; the CLI turns that into a user error.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from rlvr.methods.base import AUX_FIELDS, Method, TokenBatch

__all__ = ["Method", "TokenBatch", "AUX_FIELDS", "register", "get", "available", "build", "build_spec", "describe"]

_REGISTRY: dict[str, type[Method]] = {}

# Modules that define methods; each registers its methods on import.
_METHOD_MODULES: tuple[str, ...] = ("rlvr.methods.grpo", "rlvr.methods.nsr", "rlvr.methods.lp_reg", "rlvr.methods.casp", "rlvr.methods.bbg",
                                    "rlvr.methods.gspo", "rlvr.methods.cispo", "rlvr.methods.rloo",
                                    "rlvr.methods.reinforce_pp", "rlvr.methods.cov", "rlvr.methods.passk",
                                    "rlvr.methods.gmpo")


def register(name: str):
    """Class decorator: register a frozen `Method` dataclass under `name` (sets `cls.name`)."""

    def deco(cls: type[Method]) -> type[Method]:
        # the class itself must be a dataclass, not just inherit Method's fields
        if not (isinstance(cls, type) and issubclass(cls, Method) and "__dataclass_fields__" in cls.__dict__):
            raise TypeError(f"{cls!r} must be a dataclass subclassing rlvr.methods.base.Method")
        if not cls.__dataclass_params__.frozen:
            raise TypeError(f"method {name!r}: {cls.__name__} must be a frozen dataclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    for mod in _METHOD_MODULES:
        importlib.import_module(mod)


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[Method]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}") from None


def _type_ok(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # YAML writes 1 for 1.0
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    raise TypeError(f"unsupported field type {hint!r} in a method config")


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def build(name: str, overrides: Mapping[str, Any] | None = None) -> Method:
    """The method `name` with the paper defaults replaced by `overrides` (field -> value).

    Raises ValueError naming the method and field for an unknown field, a value of the wrong type, or a
    value the method's own checks reject.
    """
    cls = get(name)
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ValueError(f"method {name!r}: unknown field {key!r}; fields: {', '.join(sorted(fields))}")
        if not _type_ok(value, hints[key]):
            raise ValueError(f"method {name!r}: field {key!r} must be {_type_name(hints[key])}, got {value!r}")
    kwargs = {k: (float(v) if hints[k] is float else v) for k, v in (overrides or {}).items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"method {name!r}: {e}") from None


def build_spec(spec: Mapping[str, Any]) -> Method:
    """`build` from one mapping as configs write it: {"name": NAME, field: value, ...}."""
    return build(spec["name"], {k: v for k, v in spec.items() if k != "name"})


def describe(name: str) -> dict[str, Any]:
    """Name, one-line summary, docstring and fields (name, type, default) of a method, for `rlvr methods`."""
    cls = get(name)
    hints = get_type_hints(cls)
    doc = typing.cast(str, cls.__doc__ or "").strip()
    if "arxiv" not in doc.lower():   # the paper and code are cited once, in the module docstring: show them too
        import sys

        module_doc = getattr(sys.modules.get(cls.__module__), "__doc__", None) or ""
        sources = [p.strip() for p in module_doc.split("\n\n") if "Paper:" in p or "Code:" in p]
        if sources:
            doc = doc + "\n\n" + "\n\n".join(sources)
    return {
        "name": name,
        "summary": _first_sentence(doc),
        "doc": doc,
        "fields": [{"name": f.name, "type": _type_name(hints[f.name]), "default": f.default}
                   for f in dataclasses.fields(cls) if f.init],
    }


def _first_sentence(doc: str) -> str:
    """The docstring's first paragraph up to its first full stop, on one line (a summary that ends where
    its sentence does, not where the line wraps)."""
    import re

    para = " ".join(doc.split("\n\n")[0].split()) if doc else ""
    end = re.search(r"\.(?=\s+[A-Z])", para)             # not "Eq. 9" or "e.g. the"
    return para if end is None else para[:end.start() + 1]
