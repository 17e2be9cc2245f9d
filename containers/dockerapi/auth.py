"""The Docker API's token over TCP: one admin token until the team issue brings tokens per user.

`manage.py dockerapi_token` makes a token and prints it once; the state root keeps only its
SHA-256, readable by root alone. Clients send it as `Authorization: Bearer <token>`: the docker
CLI from `HttpHeaders` in its config.json, docker-py from `client.api.headers`. The unix socket
needs no token: its file mode (0600, root) is the check, as for Docker's own socket.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "docker-api-token.sha256"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_token(root: Path) -> str:
    """Make a new token, replacing the previous one; return it (it is kept nowhere in clear)."""
    token = secrets.token_urlsafe(32)
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    tmp = root / (TOKEN_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_digest(token) + "\n")
    os.replace(tmp, root / TOKEN_FILE)
    return token


def authorized(root: Path, authorization: str) -> bool:
    """Whether an `Authorization` header carries the current token (read each time: a new one applies at once)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        stored = (root / TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        return False
    return hmac.compare_digest(_digest(token.strip()), stored)
