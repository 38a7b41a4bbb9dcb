"""Render TOML: the commented example (`tundra config init`) and the effective config (`show`).

Comments come from the attribute docstrings in :mod:`tundra.config.schema`, so the example
always lists every key with its default and meaning.
"""

from __future__ import annotations

import ast
import inspect
import json
from typing import Any

import msgspec

from tundra.config import schema
from tundra.config.schema import Config

__all__ = ["render_example", "render_toml", "field_docs"]


def field_docs() -> dict[str, dict[str, str]]:
    """class name -> field -> the docstring written under it in schema.py."""
    tree = ast.parse(inspect.getsource(schema))
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and i + 1 < len(body):
                nxt = body[i + 1]
                if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                    docs[stmt.target.id] = " ".join(nxt.value.value.split())
        out[node.name] = docs
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {type(v).__name__} as TOML")


def render_toml(config: Config) -> str:
    data = msgspec.to_builtins(config)
    lines: list[str] = []
    for section, values in data.items():
        if values is None:
            continue
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def render_example() -> str:
    docs = field_docs()
    out = [
        "# Tundra configuration ($TUNDRA_HOME/config.toml).",
        "# Every key is shown with its default; delete what you do not change.",
        "# Check it with `tundra config validate`; a running daemon re-reads it on SIGHUP.",
        "",
    ]
    cfg = Config()
    info: Any = msgspec.inspect.type_info(Config)
    for f in info.fields:
        default = getattr(cfg, f.name)
        section_type: Any = f.type
        if isinstance(section_type, msgspec.inspect.UnionType):
            section_type = next(t for t in section_type.types if isinstance(t, msgspec.inspect.StructType))
        cls = section_type.cls
        if cls.__doc__:
            out.append("# " + cls.__doc__.strip().splitlines()[0])
        commented = default is None
        if commented:
            out.append("# Uncomment to use Dolt (or another MySQL-protocol server) as the store.")
            default = cls()
        out.append(f"{'# ' if commented else ''}[{f.name}]")
        values = msgspec.to_builtins(default)
        for key, value in values.items():
            doc = docs.get(cls.__name__, {}).get(key)
            if doc:
                out.append(f"# {doc}")
            out.append(f"{'# ' if commented else ''}{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def _rule(cls: type[Any], name: str) -> str:
    """The validation rule of a field, read from its ``_require``/``_port`` call in schema.py."""
    src = inspect.getsource(cls)
    for line in src.splitlines():
        line = line.strip()
        if line.startswith("_port(") and f'"{name}"' in line:
            return "1-65535"
        if line.startswith("_require(") and f'"{name}"' in line:
            return line.split(f'"{name}", ', 1)[1].rsplit(")", 1)[0].strip('f"').split(", got")[0].replace("must be ", "")
    return ""


def render_reference_markdown() -> str:
    """The key table of docs/configuration.md (a test keeps the doc in sync)."""
    docs = field_docs()
    out: list[str] = []
    info: Any = msgspec.inspect.type_info(Config)
    for f in info.fields:
        section_type: Any = f.type
        if isinstance(section_type, msgspec.inspect.UnionType):
            section_type = next(t for t in section_type.types if isinstance(t, msgspec.inspect.StructType))
        cls = section_type.cls
        out.append(f"### `[{f.name}]`\n")
        if cls.__doc__:
            out.append(cls.__doc__.strip() + "\n")
        out.append("| key | default | rule | meaning |")
        out.append("|---|---|---|---|")
        for key, value in msgspec.to_builtins(cls()).items():
            cls_info: Any = msgspec.inspect.type_info(cls)
            sub: Any = next(x for x in cls_info.fields if x.name == key)
            rule = _rule(cls, key)
            if isinstance(sub.type, msgspec.inspect.LiteralType):
                rule = " \\| ".join(str(v) for v in sub.type.values)
            doc = docs.get(cls.__name__, {}).get(key, "")
            out.append(f"| `{key}` | `{_toml_value(value)}` | {rule} | {doc} |")
        out.append("")
    return "\n".join(out)
