"""TOML configs read into nested frozen dataclasses, checked against the field types.

Torch-free and generic: training configs, export configs and device profiles
all load through :func:`load`. A dataclass states what it accepts with its
type hints (int, float, bool, str, ``str | None``, fixed pairs such as
``tuple[int, int]``, ``tuple[str, ...]``, nested dataclasses; ``dict`` only
for a deliberately untyped table) and, optionally, ranges in field metadata::

    width: int = field(default=24, metadata={"min": 1})
    p: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})
    task: str = field(default="recon", metadata={"choices": ("recon", "cls")})

(``min``/``max`` inclusive, ``gt``/``lt`` exclusive; on a tuple they apply to
each item). Checks that span fields go in ``__post_init__``, raising
:class:`FieldError` (names the key) or ``ValueError``. Every problem becomes one
:class:`~sci_edge.errors.ConfigError` line: ``file: dotted.key: what is wrong``.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["FieldError", "apply_overrides", "build", "check_fields", "find", "load",
           "parse_set", "parse_sets", "read_toml"]


class FieldError(ValueError):
    """A value a dataclass refuses: ``key`` (dotted, relative to it) and ``problem``."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


# --- files and overrides ---------------------------------------------------------------

def find(name: str | Path, bundled: str | Path | None = None) -> Path:
    """The config file ``name``: a path, or a bare name (``stage1_fem`` or
    ``stage1_fem.toml``) looked up in the ``bundled`` folder."""
    path = Path(name)
    if path.exists() or bundled is None or path.parent != Path("."):
        return path
    return Path(bundled) / (path.name if path.suffix == ".toml" else f"{path.name}.toml")


def read_toml(name: str | Path, bundled: str | Path | None = None) -> tuple[Path, dict]:
    """(path, table) of a TOML file; a missing or malformed file is a ConfigError."""
    path = find(name, bundled)
    if not path.is_file():
        known = (f" (bundled: {', '.join(sorted(p.stem for p in Path(bundled).glob('*.toml')))})"
                 if bundled is not None and Path(bundled).is_dir() else "")
        raise ConfigError(path, f"config not found{known}")
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"not valid TOML ({_one_line(exc)})") from exc
    except OSError as exc:
        raise ConfigError(path, f"cannot be read ({exc.strerror or exc})") from exc


def parse_set(item: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ("a.b", value); VALUE is read as TOML (numbers, booleans,
    arrays, quoted strings), anything else is taken as a plain string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(None, f"--set {item!r}: expected KEY=VALUE (KEY may be dotted, a.b.c)")
    try:
        return key, tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return key, text.strip()


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """Several ``--set`` items; a later one wins."""
    return dict(parse_set(item) for item in items)


def apply_overrides(raw: Mapping, overrides: Mapping[str, Any] | Iterable[str] | None, *,
                    path: str | Path | None = None) -> dict:
    """A copy of ``raw`` with dotted overrides set (``{"a.b": 3}`` or ``["a.b=3"]``)."""
    out = _copy_tables(raw)
    if overrides is None:
        return out
    items = overrides.items() if isinstance(overrides, Mapping) else parse_sets(overrides).items()
    for key, value in items:
        parts = str(key).split(".")
        table = out
        for i, part in enumerate(parts[:-1]):
            nxt = table.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(path, f"{'.'.join(parts[:i + 1])}: is a value, not a table, "
                                        f"so {key} cannot be set")
            table = nxt
        table[parts[-1]] = value
    return out


def _copy_tables(d: Mapping) -> dict:
    return {k: _copy_tables(v) if isinstance(v, Mapping) else v for k, v in d.items()}


# --- dataclasses -----------------------------------------------------------------------

def load(cls: type[T], name: str | Path, *, bundled: str | Path | None = None,
         overrides: Mapping[str, Any] | Iterable[str] | None = None) -> T:
    """Read a TOML file, apply ``overrides`` and build ``cls`` from it."""
    path, raw = read_toml(name, bundled)
    return build(cls, apply_overrides(raw, overrides, path=path), path=path)


def build(cls: type[T], data: Mapping, *, path: str | Path | None = None,
          prefix: str = "") -> T:
    """``cls`` from a (nested) mapping: unknown keys, wrong types and values out of
    range are ConfigErrors naming ``path`` and the dotted key."""
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"{prefix.rstrip('.') or 'config'}: must be a table, "
                                f"got {data!r}")
    fields = _fields(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(path, f"{where}: unknown key{_suggest(str(key), list(fields))}")
        f, tp = fields[key]
        try:
            value = _coerce(value, tp, where, path)
            _check_range(value, f.metadata)
        except FieldError as exc:
            raise ConfigError(path, f"{where}: {exc.problem}") from None
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(path, f"{prefix}{exc.key}: {exc.problem}") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        where = f"{prefix.rstrip('.')}: " if prefix else ""
        raise ConfigError(path, f"{where}{_one_line(exc)}") from None


def check_fields(obj) -> None:
    """Check a dataclass instance's values against its field types and ranges (for
    ``__post_init__``, so that direct construction is checked as loading is)."""
    for name, (f, tp) in _fields(type(obj)).items():
        value = getattr(obj, name)
        _coerce(value, tp, name, None, convert=False)
        try:
            _check_range(value, f.metadata)
        except FieldError as exc:
            raise FieldError(name, exc.problem) from None


@functools.cache
def _fields(cls) -> dict[str, tuple[dataclasses.Field, Any]]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init}


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known))})"


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _coerce(value, tp, where: str, path, convert: bool = True):
    """``value`` as type ``tp`` (ints become floats, lists tuples), or a FieldError."""
    def bad(kind: str):
        return FieldError(where, f"must be {kind}, got {value!r}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is dict or origin is dict:          # an untyped table: kept as is
        if tp is not Any and not isinstance(value, Mapping):
            raise bad("a table")
        return dict(value) if convert and isinstance(value, Mapping) else value
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if value is None and len(rest) < len(args):
            return None
        if len(rest) != 1:
            raise TypeError(f"{where}: unsupported field type {tp!r}")
        return _coerce(value, rest[0], where, path, convert)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not convert or not isinstance(value, Mapping):
            raise bad("a table" if convert else f"a {tp.__name__}")
        return build(tp, value, path=path, prefix=f"{where}.")
    if tp in _NAMES:
        if not _is(value, tp):
            raise bad(_NAMES[tp])
        return float(value) if tp is float and convert else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            kinds, kind = None, f"a list of {_PLURAL.get(args[0], args[0])}"
        else:
            kinds = args
            same = len(set(args)) == 1
            kind = (f"a list of {len(args)} {_PLURAL.get(args[0], args[0])}" if same
                    else f"a list of {len(args)} values ({', '.join(map(str, args))})")
        if not isinstance(value, (list, tuple)) or (kinds is not None and len(value) != len(kinds)):
            raise bad(kind)
        items = []
        for i, v in enumerate(value):
            item_tp = args[0] if kinds is None else kinds[i]
            if item_tp in _NAMES and not _is(v, item_tp):
                raise bad(kind)
            items.append(_coerce(v, item_tp, f"{where}[{i}]", path, convert))
        return tuple(items) if convert else value
    raise TypeError(f"{where}: unsupported field type {tp!r}")


def _is(value, tp) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if tp is float else isinstance(value, tp)


def _check_range(value, meta: Mapping) -> None:
    if not meta or value is None:
        return
    many = isinstance(value, tuple)
    subject = "each item must be" if many else "must be"
    choices = meta.get("choices")
    lo, hi, gt, lt = (meta.get(k) for k in ("min", "max", "gt", "lt"))
    for v in value if many else (value,):
        if choices is not None and v not in choices:
            raise FieldError("", f"{subject} one of {', '.join(map(repr, choices))}, got {v!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        low_ok = (lo is None or v >= lo) and (gt is None or v > gt)
        high_ok = (hi is None or v <= hi) and (lt is None or v < lt)
        if not (low_ok and high_ok):
            got = f"{list(value)!r}" if many else f"{v!r}"
            raise FieldError("", f"{subject} {_range_text(lo, hi, gt, lt)}, got {got}")


def _range_text(lo, hi, gt, lt) -> str:
    low = f"[{lo}" if lo is not None else f"({gt}" if gt is not None else None
    high = f"{hi}]" if hi is not None else f"{lt})" if lt is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f">= {lo}" if lo is not None else f"> {gt}"
    return f"<= {hi}" if hi is not None else f"< {lt}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
