"""Typed configs from YAML: dataclasses filled from plain dicts, with errors that name the field.

    cfg = load_config(TrainConfig, "recipe.yaml", overrides=["steps=20", "method.beta=0.1"])

Unknown keys, missing required keys and values of the wrong type are `UserError`s such as
`recipe.yaml: field 'optimizer.lr': expected float, got 'fast'`. No Hydra: a config is data.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from rlvr.harness.errors import UserError

T = TypeVar("T")


@functools.cache
def _yaml_loader():
    """PyYAML's safe loader, reading numbers as YAML 1.2 does: `1e-3` is a float (YAML 1.1, PyYAML's
    schema, wants `1.0e-3` and reads `1e-3` as a string, which every config of the field writes)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            # a key given twice is an error (YAML 1.2 requires unique keys; PyYAML keeps the last silently);
            # merge keys (`<<: *base`) may still be overridden by the mapping's own keys
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:       # an unhashable key: PyYAML's own error says so
                        continue
                    if first is not key_node:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first given on line {first.start_mark.line + 1})",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
         [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))
    return Loader


def yaml_load(text_or_stream: Any) -> Any:
    """YAML as configs read it (`_yaml_loader`)."""
    import yaml

    return yaml.load(text_or_stream, Loader=_yaml_loader())   # a SafeLoader subclass: no arbitrary objects


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if len(errors) == 1 else f"field '{where}': expected {_type_name(hint)}, "
                        f"got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"field '{where}': expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"field '{where}': expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise UserError(f"field '{where}': expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"field '{where}': expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"field '{where}': expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"field '{where}': expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"field '{where}': expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"field '{where}': expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass `cls` from `data`, checking names and types recursively."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise UserError(f"field '{prefix}{unknown[0]}': unknown (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"field '{prefix}{name}': required")
    try:
        return cls(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError) as e:
        raise UserError(f"{where or cls.__name__}: {e}") from None


def yaml_error(where: str, e: Exception) -> UserError:
    """A `UserError` for a YAML syntax or construction error: `FILE:LINE:COLUMN: problem` (1-based)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    start = getattr(e, "context_mark", None)
    if context and start is not None and start is not mark and start.line != mark.line:
        context += f" that starts on line {start.line + 1}"
    if mark is None:
        return UserError(f"{where}: not valid YAML ({problem})")
    return UserError(f"{where}:{mark.line + 1}:{mark.column + 1}: {problem}" + (f" ({context})" if context else ""))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    import yaml

    try:
        return key.strip().split("."), yaml_load(raw)
    except yaml.YAMLError as e:
        raise UserError(f"--set {text}: not a valid YAML value ({getattr(e, 'problem', None) or e})") from None


def read_config_data(path: str | Path | None = None, overrides: list[str] | None = None,
                     base: dict | None = None) -> dict:
    """The mapping of a YAML config file (over `base`) with `--set key.path=value` overrides applied."""
    import yaml

    data: dict = dict(base or {})
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                loaded = yaml_load(f) or {}
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file") from None
        except yaml.YAMLError as e:
            raise yaml_error(str(path), e) from None
        except OSError as e:
            raise UserError(f"{path}: cannot read the config file ({e.strerror or e})") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: expected a mapping at the top level")
        data.update(loaded)
    for ov in overrides or []:
        keys, value = parse_override(ov)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {ov}: '{k}' is not a mapping")
        node[keys[-1]] = value
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None, ignore: tuple[str, ...] = ()) -> T:
    """`cls` from a YAML file and `--set` overrides; top-level keys in `ignore` belong to another reader
    (e.g. the `verl:` section, read only by `rlvr train --backend verl`)."""
    data = read_config_data(path, overrides, base)
    for key in ignore:
        data.pop(key, None)
    try:
        return from_dict(cls, data)
    except UserError as e:
        raise UserError(blame(str(e), path, overrides)) from None


def field_source(field_name: str, path: str | Path | None, overrides: list[str] | None = None) -> str:
    """Who set config field `field_name` (dotted): the last `--set` that set it or a mapping above it
    (`--set optimizer.lr=abc`), else the config file (`FILE: field 'optimizer.lr'`)."""
    for ov in reversed(overrides or []):
        key = ov.split("=", 1)[0].strip()
        if field_name == key or field_name.startswith(key + ".") or field_name.startswith(key + "["):
            return f"--set {ov}"
    return f"{path or 'config'}: field '{field_name}'"


def blame(message: str, path: str | Path | None, overrides: list[str] | None = None) -> str:
    """A config error message (`field 'X': ...` as `from_dict` writes them) prefixed with where the value
    came from: the `--set` that set field X, else the config file."""
    m = re.match(r"field '([^']+)': (.*)", message, re.S)
    if m:
        # a nested reader's own field names the rest of the path: "field 'method': ... field 'kl_coef' ..."
        inner = re.search(r"field '([^']+)'", m.group(2))
        name = f"{m.group(1)}.{inner.group(1)}" if inner else m.group(1)
        source = field_source(name, path, overrides)
        if not source.startswith("--set") and not inner:
            # a --set below the field made or changed it (`--set method.kl_coef=0` where the file has no method)
            setters = [ov for ov in overrides or [] if ov.split("=", 1)[0].strip().startswith(name + ".")]
            source = f"--set {setters[-1]}" if setters else source
        if source.startswith("--set"):
            return f"{source}: field '{m.group(1)}': {m.group(2)}"
    return f"{path or 'config'}: {message}"
