"""Routes of the Docker Engine API: paths with and without `/v1.xx`, and errors in moby's words.

Moby serves every route under `/v[0-9.]+` and without it; image names in paths contain `/` and
`:`, so they match greedily between the fixed prefix and suffix, as moby's `{name:.*}` does.
An unknown path answers 404 `page not found` (`docker inspect` relies on it to try the next kind
of object); a Docker route this server does not have yet answers 501 and says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied

from containers.dockerapi.httpserver import API_VERSION, MIN_API_VERSION, ApiError, Reply, Request, error_response
from containers.engine.errors import (
    AlreadyExists,
    Conflict,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Reply]
_VERSIONED = re.compile(r"/v([0-9.]+)(/.*)")

# Categories to statuses, the one place engine errors become HTTP: moby answers 409 for a verb
# that the container's state refuses (kill or exec on a stopped container), so does this.
_STATUS: list[tuple[type[EngineError], int]] = [
    (NotFound, 404),
    (AlreadyExists, 409),
    (Conflict, 409),
    (FailedPrecondition, 409),
    (InvalidArgument, 400),
    (Unavailable, 503),
]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    """Declare `method pattern`, a regex over the unversioned path with named groups as parameters."""
    return Route(method, re.compile(pattern), handler)


def status_of(err: EngineError) -> int:
    return next((status for kind, status in _STATUS if isinstance(err, kind)), 500)


def parse_target(path: str) -> tuple[str, str]:
    """Split `/v1.50/containers/json` into ("1.50", "/containers/json"); no prefix means our version."""
    match = _VERSIONED.fullmatch(path)
    if match is None:
        return API_VERSION, path
    return match.group(1), match.group(2)


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise ApiError(400, f"invalid API version {text!r}") from None


class Router:
    """Find the handler for a request and turn what it raises into Docker's error answers."""

    def __init__(self, routes: Iterable[Route], unimplemented: Iterable[tuple[str, str, str]] = ()) -> None:
        self.routes = list(routes)
        self.unimplemented = [(method, re.compile(pattern), what) for method, pattern, what in unimplemented]

    def dispatch(self, request: Request) -> Reply:
        try:
            self._check_version(request.version)
            for candidate in self.routes:
                match = candidate.pattern.fullmatch(request.path)
                if match is not None and candidate.method == request.method:
                    request.params = match.groupdict()
                    return candidate.handler(request)
            for method, pattern, what in self.unimplemented:
                if method in ("*", request.method) and pattern.fullmatch(request.path):
                    raise ApiError(501, f"{what} is not implemented yet in webengine")
            raise ApiError(404, "page not found")
        except ApiError as err:
            return error_response(err.status, err.message)
        except EngineError as err:
            return error_response(status_of(err), str(err))
        except PermissionDenied as err:
            # A member whose role is too low, or a read-only token (scoping.py); outsiders get 404.
            return error_response(403, str(err))
        except Exception as err:
            logger.exception("%s %s failed", request.method, request.target)
            return error_response(500, f"{type(err).__name__}: {err}")

    @staticmethod
    def _check_version(version: str) -> None:
        wanted = _version_tuple(version)
        if wanted < _version_tuple(MIN_API_VERSION):
            raise ApiError(
                400,
                f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                "please upgrade your client to a newer version",
            )
        if wanted > _version_tuple(API_VERSION):
            raise ApiError(400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
