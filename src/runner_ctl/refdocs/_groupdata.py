"""docs/reference/group-data.md: every group-data key of every layer, from the layer specs' fields."""

import types
import typing
from typing import Any

from runner_ctl.layers import LAYER_ORDER, SPECS, LayerSpec, expected_form
from runner_ctl.refdocs._md import HEADER, cell, code, table

__all__ = ["group_data_page", "key_table", "type_name"]


def _default(value: Any) -> str:
    if isinstance(value, tuple | list):
        if value and all(hasattr(item, "model_dump") for item in value):
            value = [item.model_dump() for item in value]
        else:
            value = list(value)
    return code(repr(value)).replace("|", "\\|")


_NAMES: dict[object, str] = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "None"}


def type_name(annotation: Any) -> str:
    """A field's type in group data's terms (Python values in ``group_data/*.py``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " or ".join(repr(arg) for arg in args)
    if origin in (tuple, list):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return "mapping (" + ", ".join(annotation.model_fields) + ")"
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def key_table(spec: LayerSpec) -> str:
    """One row per settings field: key, type, default, expected form, description."""
    defaults = spec.settings().model_dump()
    rows = []
    for key, field in spec.settings.model_fields.items():
        form = cell(expected_form(spec.settings, key) or "")
        secret = " (a secret reference)" if key in spec.secret_fields else ""
        rows.append(
            [
                code(key),
                cell(type_name(field.annotation)),
                _default(defaults[key]),
                form,
                cell(f"{field.description}{secret}"),
            ]
        )
    return table(["key", "type", "default", "expected", "what it does"], rows)


def group_data_page() -> str:
    parts = [
        HEADER,
        "# Group data\n\n",
        "Every key a host layer reads from pyinfra group data (`inventories/group_data/all.py` sets the "
        "defaults for all hosts). Unknown keys, keys of the wrong type and values outside the expected "
        "form are refused with one line before any host changes. Keys marked *a secret reference* take "
        "`env:NAME`, `file:PATH`, `cmd:COMMAND` or `generated:`, resolved on the operator's machine.\n\n",
        "Layers, in the order `deploys/runner_host.py` applies them: ",
        ", ".join(f"[{name}](#{name})" for name in LAYER_ORDER),
        ".\n",
    ]
    for name in LAYER_ORDER:
        spec = SPECS[name]
        parts.append(f"\n## {name} {{#{name}}}\n\n")
        parts.append(f"Applied by `deploys/{spec.name}.py`; settings model `{spec.settings.__module__}.")
        parts.append(f"{spec.settings.__qualname__}`.")
        if spec.apt_packages:
            parts.append(" Debian packages: " + ", ".join(code(package) for package in spec.apt_packages) + ".")
        parts.append("\n\n" + key_table(spec))
    return "".join(parts)
