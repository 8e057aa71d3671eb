"""What a host layer declares about itself: its settings, its apt packages, its secrets.

One spec per layer (``runner_ctl.layers.<name>``); ``runner_ctl.hostdata`` composes them.
Each settings field documents itself: ``Field(default, description=..., examples=[...])``
plus ``json_schema_extra={"form": "..."}`` — the expected form a one-line error shows —
so the error messages, ``inventories/group_data/all.py``'s comments and the docs site's
group-data reference (docs/reference/group-data.md) come from one source.
"""

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["LayerSettings", "LayerSpec", "check_download_url", "check_safe_path", "expected_form", "non_empty_tuple"]


class LayerSettings(BaseModel):
    """Base of every layer's settings model: unknown keys refused, values immutable, no coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(frozen=True)
class LayerSpec:
    name: str  # the layer's file stem in deploys/
    settings: type[LayerSettings]
    apt_packages: tuple[str, ...] = ()
    secret_fields: tuple[str, ...] = ()  # fields holding secret references (env:/file:/cmd:/generated:)


def expected_form(model: type[BaseModel], key: str) -> str | None:
    """The documented expected form of ``key`` (with its example), if the model declares one."""
    field = model.model_fields.get(key)
    if field is None:
        return None
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    form = extra.get("form")
    if not isinstance(form, str):
        return None
    if field.examples:
        return f"{form} (e.g. {field.examples[0]!r})"
    return form


def non_empty_tuple(value: Any) -> tuple[Any, ...]:
    """Group data lists arrive as lists; the models keep tuples (they are frozen)."""
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not value:
        raise ValueError("empty or not a list")
    return value


# Paths reach shell commands (mount, fstab) and config files: letters, digits and . _ + @ - /
# only, so no value can carry whitespace, a newline, a quote or a shell metacharacter.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*$")


def check_safe_path(value: str) -> None:
    if not _SAFE_PATH.fullmatch(value) or "/../" in f"{value}/":
        raise ValueError("whitespace, '..', quotes and shell metacharacters are not allowed in a path")


# Placeholders a download URL may use; a mirror URL may drop either.
_URL_FIELDS = re.compile(r"\{(version|arch)\}")


def check_download_url(value: str) -> str:
    """A release download URL template: http(s), one word, {version} and {arch} its only braces."""
    if not re.fullmatch(r"https?://[^\s'\"\\]+", value):
        raise ValueError(f"not an http(s) URL: {value!r}")
    leftover = _URL_FIELDS.sub("", value)
    if "{" in leftover or "}" in leftover:
        raise ValueError("only {version} and {arch} may appear in braces")
    return value
