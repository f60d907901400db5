"""Bearer tokens: created, listed, revoked, checked. Tokens are random (256 bits) and stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Invalid, NotFound
from app.models import Project, Token, utcnow
from app.settings import Settings

PREFIX = "bxl_"
ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: str
    projects: frozenset[int]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, project_id: int) -> bool:
        return self.is_admin or project_id in self.projects


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session, name: str, role: str, projects: list[int] | None = None, token: str | None = None
) -> tuple[Token, str]:
    """A new token row; returns it with the token itself, which is not stored and cannot be shown again."""
    if role not in ("admin", "annotator"):
        raise Invalid(f"role must be admin or annotator, not {role!r}")
    projects = sorted(set(projects or []))
    if role == "annotator":
        if not projects:
            raise Invalid("an annotator token needs at least one project")
        known = set(session.scalars(select(Project.id).where(Project.id.in_(projects))))
        missing = [p for p in projects if p not in known]
        if missing:
            raise NotFound(f"projects {missing} do not exist")
    plain = token or new_token()
    row = Token(
        name=name,
        role=role,
        projects=projects if role == "annotator" else [],
        token_hash=hash_token(plain),
        prefix=plain[: len(PREFIX) + 6],
    )
    session.add(row)
    session.flush()
    return row, plain


def authenticate(session: Session, token: str) -> Principal | None:
    digest = hash_token(token)
    row = session.scalars(select(Token).where(Token.token_hash == digest)).one_or_none()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.id, row.name, row.role, frozenset(int(p) for p in row.projects or []))


def list_tokens(session: Session) -> list[Token]:
    return list(session.scalars(select(Token).order_by(Token.id)))


def revoke_token(session: Session, key: str) -> Token:
    """Revoke by id or by the prefix shown in listings."""
    stmt = (
        select(Token).where(Token.id == int(key))
        if key.isdigit()
        else select(Token).where(Token.prefix == key)
    )
    rows = list(session.scalars(stmt))
    if len(rows) != 1:
        raise NotFound(f"no single token matches {key!r}; use the id from `boxal token list`")
    rows[0].revoked_at = rows[0].revoked_at or utcnow()
    session.flush()
    return rows[0]


def ensure_admin_token(session: Session, settings: Settings) -> str:
    """An admin token exists: BOXAL_ADMIN_TOKEN if set, else one generated on first start and kept in the
    data dir, readable by its owner only. Returns where it comes from, for the start-up message."""
    if settings.admin_token:
        plain, origin = settings.admin_token, "BOXAL_ADMIN_TOKEN"
        if len(plain) < 16:
            raise ValueError("BOXAL_ADMIN_TOKEN is too short: use at least 16 random characters")
    else:
        path = settings.resolved_data_dir / ADMIN_TOKEN_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(new_token() + "\n")
        plain, origin = Path(path).read_text().strip(), f"the file {path} (owner-only)"
    digest = hash_token(plain)
    if session.scalars(select(Token).where(Token.token_hash == digest)).one_or_none() is None:
        try:
            with session.begin_nested():
                create_token(session, "admin", "admin", token=plain)
        except IntegrityError:  # another API process created it at the same moment
            pass
    return origin
