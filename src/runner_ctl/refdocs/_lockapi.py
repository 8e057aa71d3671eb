"""docs/reference/lock-api.md and openapi.json: the lock service's HTTP API, from its OpenAPI document.

The document is the one the service itself serves at /openapi.json: the generator builds the
real application on a throwaway database and asks it.
"""

import asyncio
import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx

from runner_ctl.lock.service import create_app
from runner_ctl.lock.store import LockStore
from runner_ctl.lock.tokens import TokenTable
from runner_ctl.refdocs._md import HEADER, cell, code, table

__all__ = ["lock_api_page", "openapi_document", "openapi_json"]


@functools.cache  # both lock-api.md and openapi.json come from one fetch (callers only read it)
def openapi_document() -> dict[str, Any]:
    """GET /openapi.json of a real service instance (in-process ASGI, no socket)."""

    async def fetch(app: Any) -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lock.invalid") as client:
            response = await client.get("/openapi.json")
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

    with tempfile.TemporaryDirectory() as directory:
        store = LockStore(Path(directory) / "lock.db")
        try:
            return asyncio.run(fetch(create_app(store, TokenTable([]))))
        finally:
            store.close()


def openapi_json() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(code(value) for value in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _limits(schema: dict[str, Any]) -> str:
    words = {
        "minimum": "≥ {}", "maximum": "≤ {}", "exclusiveMinimum": "> {}", "exclusiveMaximum": "< {}",
        "minLength": "length ≥ {}", "maxLength": "length ≤ {}", "pattern": "matches {}",
    }  # fmt: skip
    found = [template.format(code(schema[key])) for key, template in words.items() if key in schema]
    for option in schema.get("anyOf", []):
        found += [template.format(code(option[key])) for key, template in words.items() if key in option]
    return ", ".join(found)


def _operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    parts = [f"### {method.upper()} {path}\n\n"]
    if operation.get("description"):
        parts.append(" ".join(operation["description"].split()) + "\n\n")
    parameters = operation.get("parameters", [])
    if parameters:
        rows = [
            [code(p["name"]), p["in"], _type(p.get("schema", {})), "yes" if p.get("required") else "no",
             cell(_limits(p.get("schema", {})))]
            for p in parameters
        ]  # fmt: skip
        parts.append(table(["parameter", "in", "type", "required", "limits"], rows) + "\n")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        parts.append(f"Body: {_type(body)}.\n\n")
    answers: list[list[str]] = []
    for status, answer in operation.get("responses", {}).items():
        schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
        shape = f" ({_type(schema)})" if "$ref" in schema else ""
        answers.append([code(status), cell(answer.get("description", "")) + shape])
    parts.append(table(["answer", "meaning"], answers) + "\n")
    return parts


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    parts = [f"### {name} {{#{name.lower()}}}\n\n"]
    if schema.get("description"):
        parts.append(" ".join(schema["description"].split()) + "\n\n")
    required = set(schema.get("required", []))
    rows = [
        [code(field), _type(spec), "yes" if field in required else "no",
         code(json.dumps(spec["default"])) if "default" in spec else "", cell(_limits(spec)),
         cell(spec.get("description", ""))]
        for field, spec in schema.get("properties", {}).items()
    ]  # fmt: skip
    parts.append(table(["field", "type", "required", "default", "limits", "meaning"], rows) + "\n")
    return parts


def lock_api_page() -> str:
    document = openapi_document()
    info = document["info"]
    parts = [
        HEADER,
        "# Lock service HTTP API\n\n",
        f"{info['title']} ({info['version']}): {info.get('description', '')} Rendered from the OpenAPI "
        "document the service serves at `/openapi.json`; the same document is beside this page as "
        "[openapi.json](openapi.json).\n\n",
        "Every path except `/healthz`, `/metrics` and `/openapi.json` needs `Authorization: Bearer TOKEN` "
        "(a line of the service's token file); without a valid token every request gets 401 and nothing "
        "else, before its body is read. Bodies over 64 KiB get 413. Wait, heartbeat, finish and withdraw "
        "also need the request's own secret, returned once by the enqueue, in the `X-Request-Secret` "
        'header (403 otherwise). Errors are JSON: `{"error": NAME, "detail": TEXT}` (no `detail` when '
        "there is nothing to add).\n\n",
        "## Operations\n\n",
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parts += _operation(method, path, operation)
    parts.append("## Schemas\n\n")
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        parts += _schema(name, schema)
    return "".join(parts).rstrip("\n") + "\n"
