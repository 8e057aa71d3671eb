"""docs/reference/json.md: the JSON lines the CLI prints, from the models in ``runner_ctl.contracts``."""

import types
import typing
from typing import Any

from pydantic import BaseModel

from runner_ctl.contracts import CONTRACTS
from runner_ctl.refdocs._md import HEADER, cell, code, table

__all__ = ["json_page"]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _describe(annotation: Any) -> tuple[str, type[BaseModel] | None, str]:
    """The type as the page writes it, the model to expand below it, and the path suffix for that."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        shown, nested, suffix = _describe(present[0]) if len(present) == 1 else (
            " or ".join(_describe(arg)[0] for arg in present), None, "")  # fmt: skip
        return (f"{shown} or null" if len(present) < len(args) else shown), nested, suffix
    if origin is typing.Literal:
        return " | ".join(code(repr(arg).replace("'", '"')) for arg in args), None, ""
    if origin in (list, tuple):
        shown, nested, suffix = _describe(args[0]) if args else ("any", None, "")
        return f"list of {shown}", nested, "[]" + suffix
    if origin is dict:
        shown, nested, suffix = _describe(args[1]) if len(args) == 2 else ("any", None, "")
        return f"object of {shown}", nested, ".*" + suffix
    model = _model_of(annotation)
    if model is not None:
        return "object", model, ""
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))), None, ""


def _rows(model: type[BaseModel], prefix: str, rows: list[list[str]]) -> None:
    for name, field in model.model_fields.items():
        shown, nested, suffix = _describe(field.annotation)
        rows.append([code(prefix + name), cell(shown), cell(field.description or "")])
        if nested is not None:
            _rows(nested, f"{prefix}{name}{suffix}.", rows)


def json_page() -> str:
    parts = [
        HEADER,
        "# JSON contracts\n\n",
        "The machine-readable output of the commands CI scripts read. Each is one JSON object on one "
        "line. Fields are added over time, never removed or renamed; read the ones you need and ignore "
        "the rest. A nested field is written with dots (`first_run.seconds`); `[]` marks the items of a "
        "list and `.*` the values of an object keyed by name. Tests validate the real output of each "
        "command against these models (`runner_ctl.contracts`, `tests/test_contracts.py`).\n",
    ]
    for contract in CONTRACTS:
        rows: list[list[str]] = []
        _rows(contract.model, "", rows)
        parts.append(f"\n## {contract.command} {{#{contract.anchor}}}\n\n")
        parts.append(" ".join(contract.summary.split()) + "\n\n")
        parts.append(table(["field", "type", "meaning"], rows))
    return "".join(parts)
