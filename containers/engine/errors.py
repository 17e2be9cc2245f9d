"""Typed error categories that the edges map to HTTP status codes.

Every error the engine raises on purpose is an `EngineError` of one category; specific errors
subclass a category so that the edge can map them in one place (404, 409, 400, 412, 503) and a
caller can still catch the precise one. Messages are lowercase, subject first, no trailing period:
`content sha256:ab12…: not found`.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFound(EngineError):
    """The named object does not exist (HTTP 404)."""


class AlreadyExists(EngineError):
    """An object with that name or digest exists already (HTTP 409)."""


class Conflict(EngineError):
    """The operation conflicts with the object's current use, e.g. an image in use (HTTP 409)."""


class InvalidArgument(EngineError):
    """The caller's input is malformed or refused (HTTP 400)."""


class FailedPrecondition(EngineError):
    """The object is not in a state that allows the operation (HTTP 412, or 409 for Docker's API)."""


class Unavailable(EngineError):
    """A resource the engine needs cannot be reached now (HTTP 503)."""


class InvalidReference(InvalidArgument):
    """An image reference that does not parse as Docker's grammar."""


class ContentNotFound(NotFound):
    """No committed blob has that digest."""


class DigestMismatch(InvalidArgument):
    """Written or received bytes do not hash to the digest they were announced with."""


class ImageNotFound(NotFound):
    """No image matches the reference or ID. The message follows moby: `No such image: <ref>`."""


class ImageInUse(Conflict):
    """The image cannot be removed because a container uses it, or several tags point at it."""


class SnapshotNotFound(NotFound):
    """No snapshot has that key or name."""


class UnsafeArchive(InvalidArgument):
    """A tar archive tries to write outside its root or holds an entry that is refused."""


class InvalidStateTransition(FailedPrecondition):
    """A lifecycle verb that the object's current state does not allow."""

    def __init__(self, from_: str, to: str, subject: str = "container") -> None:
        super().__init__(f"{subject}: cannot move from {from_} to {to}")
        self.from_ = from_
        self.to = to


class DockerfileError(InvalidArgument):
    """A Dockerfile that does not parse, with the lines at fault when known (BuildKit's wording)."""

    def __init__(self, message: str, line_start: int = 0, line_end: int = 0) -> None:
        self.message = message
        self.line_start = line_start
        self.line_end = line_end or line_start
        super().__init__(f"dockerfile parse error on line {line_start}: {message}" if line_start else message)
