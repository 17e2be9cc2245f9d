"""Image references, parsed and normalised exactly as Docker's distribution/reference does.

Grammar (distribution/reference `regexp.go`)::

    reference      := name [ ":" tag ] [ "@" digest ]
    name           := [domain "/"] path
    domain         := host [":" port]            host: DNS name, IPv4, or [IPv6]
    path           := path-component ["/" path-component]*
    path-component := [a-z0-9]+ (separator [a-z0-9]+)*     separator: "." "_" "__" "-"+
    tag            := [\\w][\\w.-]{0,127}
    digest         := algorithm ":" hex

Normalisation (`normalize.go`): the first component is a domain only if it contains `.` or `:`,
is `localhost`, or has an uppercase letter; otherwise the domain is `docker.io`, and a
one-component path on docker.io gets `library/`. The familiar form drops both again.

Image lookups also take IDs: `parse_any_reference` tells a full ID from a reference as moby's
`ParseAnyReference` does, and `id_prefix` tells whether a string could be a short ID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from containers.engine.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*))"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_TAG_ONLY = re.compile(_TAG, re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_ID_PREFIX = re.compile(r"(?:sha256:)?([a-f0-9]{1,64})")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: `domain/path[:tag][@digest]`.

    `str()` gives the full form (`docker.io/library/busybox:latest`), `familiar()` the form
    Docker shows in `RepoTags` and messages (`busybox:latest`), and `name` the repository
    without tag or digest.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Return the full repository name, e.g. `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Return the repository name as Docker shows it, e.g. `busybox` or `localhost:5000/foo`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in self.path[len(OFFICIAL_REPO_PREFIX) :]:
            return self.path[len(OFFICIAL_REPO_PREFIX) :]
        return self.path

    def familiar(self) -> str:
        """Return the familiar form with tag and digest, e.g. `busybox:latest`."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """Return this repository with `tag` and no digest."""
        if not _TAG_ONLY.fullmatch(tag):
            raise InvalidReference(f"invalid tag format: {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_docker_domain(s: str) -> tuple[str, str]:
    """Split off the registry domain the way `splitDockerDomain` does; add `library/` on docker.io."""
    first, sep, rest = s.partition("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, s
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _check_digest(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    want = _DIGEST_HEX_LENGTHS.get(algorithm)
    if want is None:
        raise InvalidReference(f"invalid reference format: unsupported digest algorithm {algorithm!r}")
    if len(hex_) != want or not re.fullmatch(r"[a-f0-9]+", hex_):
        raise InvalidReference(f"invalid reference format: invalid checksum digest {digest!r}")
    return digest


def parse_reference(s: str, default_tag: bool = True) -> Reference:
    """Parse a familiar or full reference and normalise it, as `ParseNormalizedNamed` does.

    With `default_tag`, a reference without tag and digest gets `latest` (`TagNameOnly`);
    without it, `busybox` stays name-only (as `docker save busybox` and `pull -a` need).
    A reference with both tag and digest keeps both. Raise InvalidReference on anything else.
    """
    if not s:
        raise InvalidReference("invalid reference format: repository name must have at least one component")
    if _IDENTIFIER.fullmatch(s):
        raise InvalidReference(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote_name = remainder.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidReference(f"invalid reference format: repository name ({remote_name}) must be lowercase")
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None or match["domain"] is None:
        raise InvalidReference(f"invalid reference format: {s!r}")
    if len(match["name"]) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    digest = _check_digest(match["digest"]) if match["digest"] else None
    tag = match["tag"] or (DEFAULT_TAG if default_tag and digest is None else None)
    return Reference(domain=match["domain"], path=match["path"], tag=tag, digest=digest)


def parse_any_reference(s: str) -> Reference | str:
    """Return an image ID (`sha256:<hex>`) for a full ID, else the parsed reference (`ParseAnyReference`)."""
    if _IDENTIFIER.fullmatch(s):
        return "sha256:" + s
    if s.startswith("sha256:") and _IDENTIFIER.fullmatch(s[len("sha256:") :]):
        return s
    return parse_reference(s)


def id_prefix(s: str) -> str | None:
    """Return the hex part if `s` could abbreviate an image ID (`ab12`, `sha256:ab12`), else None."""
    match = _ID_PREFIX.fullmatch(s)
    return match[1] if match else None
