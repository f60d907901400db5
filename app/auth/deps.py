"""Who is calling: a bearer token on every endpoint but /health, then a role and a project scope.

401: no token, or one that is unknown or revoked. 403: the role may not do this (annotators may only
read their projects and work their queries). 404, worded exactly like "does not exist": a project or job
outside an annotator's scope, so that a token learns nothing about projects that are not its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.service import Principal, authenticate
from app.errors import Forbidden, NotFound, Unauthorized
from app.schemas import ProjectId

bearer = HTTPBearer(auto_error=False, description="a boxal token (boxal token create)")


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing bearer token: send the header Authorization: Bearer <token>")
    with request.app.state.db.transaction(write=False) as session:
        principal = authenticate(session, credentials.credentials)
    if principal is None:
        raise Unauthorized("invalid or revoked token")
    request.state.principal = principal
    return principal


Authenticated = Annotated[Principal, Depends(current_principal)]


def require_admin(principal: Authenticated) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs an admin token; annotator tokens lease, answer and read their projects")
    return principal


def project_scope(project_id: ProjectId, principal: Authenticated) -> Principal:
    if not principal.may_see(project_id):
        raise NotFound(f"project {project_id} does not exist")
    return principal


Admin = Annotated[Principal, Depends(require_admin)]
InProject = Annotated[Principal, Depends(project_scope)]
