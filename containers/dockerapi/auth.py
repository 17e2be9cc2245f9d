"""Who asks on the Docker API: an API token's principal over TCP, a site admin on the unix socket.

Over TCP, every request but `/_ping` and `/version` carries `Authorization: Bearer we_…`, an API
token (`manage.py token create <user> --team <team>`, or the tokens page). Its principal is its
user confined to its team, and a viewer whatever the user's role if the token is read-only. The
docker CLI sends the header from `HttpHeaders` in its config.json, docker-py from
`client.api.headers`; a websocket may send the token as the subprotocol `bearer.<token>`, since a
browser cannot set a websocket's headers (websocket.py).

The unix socket is trusted as Docker's is: its file mode (0600, root) is the check, and whoever
reaches it is a site admin with no team limit. That principal's user is the peer's unix account,
named but not stored (no Django user of that name need exist), so that the audit log says who it was.
"""

from __future__ import annotations

import pwd
import socket
import struct
import time
from dataclasses import replace

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from containers import accounts
from containers.choices import AuditSource
from containers.dockerapi.httpserver import Request
from containers.permissions import Principal

BEARER = "bearer."
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_NAME_TTL_S = 10.0
_NAMES: dict[int, tuple[str, float]] = {}  # uid: (account name, when to look it up again)
_ADMINS: dict[str, AbstractUser] = {}  # account name: its site admin


def bearer_token(request: Request) -> str:
    """Return the token of `Authorization: Bearer <token>`, or of a websocket's `bearer.<token>` subprotocol; or ""."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    if request.headers.get("upgrade", "").lower() == "websocket":
        for offered in request.headers.get("sec-websocket-protocol", "").split(","):
            if offered.strip().startswith(BEARER):
                return offered.strip().removeprefix(BEARER)
    return ""


def token_principal(request: Request) -> Principal | None:
    """Return the principal of the request's token, from the TCP peer's address; None without a valid one."""
    token = bearer_token(request)
    principal = accounts.authenticate_token(token, AuditSource.DOCKER) if token else None
    if principal is None:
        return None
    return replace(principal, address=request.sock.getpeername()[0])


def unix_principal(sock: socket.socket) -> Principal:
    """Return the unix socket's principal: a site admin named after the peer's unix account."""
    _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return Principal(_site_admin(_account_name(uid)), source=AuditSource.DOCKER)


def _site_admin(name: str) -> AbstractUser:
    """Return the site admin `name`, a user never saved: one instance a name, made once, as making
    a model instance takes about 60 us and every request on the socket asks (five a `docker run`)."""
    user = _ADMINS.get(name)
    if user is None:
        user = _ADMINS[name] = get_user_model()(username=name, is_superuser=True, is_staff=True, is_active=True)
    return user


def _account_name(uid: int) -> str:
    """Return the name of the unix account `uid`, as looked up at most `_NAME_TTL_S` ago.

    Every request on the socket asks (five for a `docker run`), and a lookup reads the passwd
    database through NSS; a renamed account is seen under its new name a few seconds later.
    """
    known = _NAMES.get(uid)
    if known is not None and time.monotonic() < known[1]:
        return known[0]
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    _NAMES[uid] = (name, time.monotonic() + _NAME_TTL_S)
    return name
