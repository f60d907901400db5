"""The OpenAPI schema tells the truth about what this server enforces: limits that come from its settings
(page size, lease size, a project's default lease size) are written into the schema it serves, bodies
that a route reads itself (to stream them) are in its components, and 405 answers name the allowed
methods."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from app.images.schemas import ImagesIn
from app.settings import Settings

READ_BY_ROUTES: tuple[type[BaseModel], ...] = (ImagesIn,)  # bodies referenced by $ref in openapi_extra


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
            components = schema["components"]["schemas"]
            for name in ("LeaseIn", "ProjectSettings", "ProjectSettingsPatch"):
                k = components[name]["properties"]["k"]
                for option in k.get("anyOf", [k]):
                    if option.get("type") == "integer":
                        option["maximum"] = min(option.get("maximum", settings.max_k), settings.max_k)
                k["description"] = f"{k.get('description', '')} (at most BOXAL_MAX_K, {settings.max_k} here)"
            for model in READ_BY_ROUTES:  # their routes parse them from the raw body: FastAPI never saw them
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components.setdefault(model.__name__, body)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
