"""Load and validate ``config.toml`` into :class:`~tundra.config.schema.Config`.

Every problem becomes a :class:`ConfigError` whose message names the file, the line or the
field, and what was expected::

    config.toml:4: invalid TOML: Expected '=' after a key in a key/value pair
    config.toml: dolt.port: expected int, got str "3306"
    config.toml: dolt.port: must be 1-65535, got 70000
    config.toml: dolt.prot: unknown key (did you mean `port`?)
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from tundra.config.errors import ConfigError
from tundra.config.schema import Config

__all__ = ["load_config", "parse_config", "convert_section", "ConfigProblem", "read_toml"]

T = TypeVar("T")

_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")
_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`")

_TYPE_NAMES = {"str": "str", "int": "int", "float": "float", "bool": "bool", "array": "list",
               "object": "table"}


class ConfigProblem(msgspec.Struct, frozen=True):
    """One problem, machine-readable (``tundra config validate --json``)."""

    file: str
    message: str
    line: int | None = None
    field: str | None = None


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _lookup(data: Any, parts: list[str]) -> Any:
    cur = data
    for p in parts:
        if isinstance(cur, dict):
            cur = cur.get(p)
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            return None
    return cur


def _unwrap(info: Any) -> Any:
    """Step into Optional[...] / unions to the struct inside."""
    if isinstance(info, msgspec.inspect.UnionType):
        return next((t for t in info.types if isinstance(t, msgspec.inspect.StructType)), info)
    return info


def _walk(model: type[Any], parts: list[str]) -> Any:
    """The type info reached by following a msgspec error path (field names or list indices)."""
    info: Any = msgspec.inspect.type_info(model)
    for p in parts:
        info = _unwrap(info)
        if isinstance(info, msgspec.inspect.StructType):
            f = next((f for f in info.fields if f.encode_name == p or f.name == p), None)
            if f is None:
                return None
            info = f.type
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType,
                               msgspec.inspect.VarTupleType)):
            info = info.item_type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return None
    return _unwrap(info)


def _struct_fields(model: type[Any], parts: list[str]) -> list[str]:
    """Key names (as written in the file) of the struct reached by following ``parts``."""
    info = _walk(model, parts)
    if isinstance(info, msgspec.inspect.StructType):
        return [f.encode_name for f in info.fields]
    return []


def explain_validation_error(
    err: msgspec.ValidationError, data: Any, model: type[Any], filename: str
) -> ConfigError:
    """Turn msgspec's message into ours: file, dotted field, expected/got, did-you-mean."""
    text = str(err)
    m = _MSGSPEC_PATH.search(text)
    raw_path = m.group("path") if m else ""
    head = text[: m.start()] if m else text
    parts = [p for p in re.split(r"[.\[\]]+", raw_path) if p]
    field = ".".join(parts)
    unk = _UNKNOWN.match(head)
    if unk:
        key = unk.group("key")
        choices = _struct_fields(model, parts)
        close = difflib.get_close_matches(key, choices, n=1)
        where = f"{field}.{key}" if field else key
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        known = f"; known keys: {', '.join(choices)}" if choices and not close else ""
        return ConfigError(
            f"{filename}: {where}: unknown key{hint}{known}",
            hint="remove or rename the key; `tundra config init` writes every valid key",
            details={"file": filename, "field": where},
        )
    exp = _EXPECTED.match(head)
    if exp:
        value = _lookup(data, parts)
        want = _TYPE_NAMES.get(exp.group("want"), exp.group("want"))
        got = _toml_type(value) if value is not None else exp.group("got")
        shown = f" {value!r}" if not isinstance(value, str) else f' "{value}"'
        if isinstance(value, (dict, list)):
            shown = ""
        return ConfigError(
            f"{filename}: {field}: expected {want}, got {got}{shown}",
            hint=f"write {field.rsplit('.', 1)[-1]} as a TOML {want}" if want in _TYPE_NAMES.values() else None,
            details={"file": filename, "field": field},
        )
    if head.startswith("Invalid enum value"):
        value = _lookup(data, parts)
        choices = _literal_choices(model, parts)
        opts = f"; expected one of {', '.join(repr(c) for c in choices)}" if choices else ""
        return ConfigError(
            f"{filename}: {field}: invalid value {value!r}{opts}",
            details={"file": filename, "field": field},
        )
    if head.startswith("Object missing required field"):
        return ConfigError(f"{filename}: {field + ': ' if field else ''}{head[0].lower()}{head[1:]}",
                           details={"file": filename, "field": field})
    # __post_init__ range checks arrive as the ValueError text: "<field>: <message>".
    rc = re.match(r"^(\w+): (.*)$", head)
    if rc and rc.group(1) in _struct_fields(model, parts):
        field = f"{field}.{rc.group(1)}" if field else rc.group(1)
        head = rc.group(2)
    return ConfigError(f"{filename}: {field}: {head}" if field else f"{filename}: {head}",
                       details={"file": filename, "field": field})


def _literal_choices(model: type[Any], parts: list[str]) -> list[Any]:
    info = _walk(model, parts)
    if isinstance(info, msgspec.inspect.LiteralType):
        return list(info.values)
    return []


def read_toml(path: Path, display: str | None = None) -> dict[str, Any] | None:
    """Parse a TOML file; ``None`` when it does not exist. Errors name the line."""
    name = display or path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, expected a TOML file ({path})") from None
    except PermissionError:
        raise ConfigError(
            f"{name}: cannot read {path}: permission denied",
            hint=f"chmod 600 {path} (and make sure it is owned by you)",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: invalid TOML: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_LINE.search(msg)
        line_no = int(m.group(1)) if m else None
        detail = _TOML_LINE.sub("", msg).strip()
        raise ConfigError(
            f"{name}:{line_no if line_no is not None else '?'}: invalid TOML: {detail}",
            hint="fix the syntax at that line (strings need quotes, tables [name], key = value)",
            details={"file": name, "line": line_no},
        ) from None


def convert_section(data: Any, model: type[T], filename: str) -> T:
    """msgspec-convert ``data`` into ``model`` with our error messages."""
    try:
        return msgspec.convert(data, model, strict=True)
    except msgspec.ValidationError as exc:
        raise explain_validation_error(exc, data, model, filename) from None


def parse_config(data: dict[str, Any], filename: str = "config.toml") -> Config:
    return convert_section(data, Config, filename)


def load_config(path: Path) -> Config:
    """The effective config: the file's values over the seed's defaults (missing file = defaults)."""
    data = read_toml(path, path.name)
    if data is None:
        return Config()
    return parse_config(data, path.name)
