"""The OpenAPI schema tells the truth about what this server enforces: limits that come from its settings
(page size, lease size) are written into the schema it serves, and 405 answers name the allowed methods."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from app.settings import Settings


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the schema lists for the request's path, HEAD with GET (RFC 9110's Allow header): the
    header and the schema cannot disagree."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def state_enforced_limits(app: FastAPI, settings: Settings) -> None:
    """Serve the schema with this server's configured limits in it (generated once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema["paths"].values():
                for operation in path.values():
                    for parameter in operation.get("parameters", []):
                        if parameter["in"] == "query" and parameter["name"] == "limit":
                            parameter["schema"]["maximum"] = settings.max_page_size
            lease = schema["components"]["schemas"]["LeaseIn"]["properties"]["k"]
            for option in lease.get("anyOf", [lease]):
                if option.get("type") == "integer":
                    option["maximum"] = settings.max_k
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
