"""Go's `%q` and `%v` formatting, as moby's commit messages (the image history) are written with them."""

from __future__ import annotations

from collections.abc import Sequence

from containers.engine.images.config import Healthcheck


def go_quote(text: str) -> str:
    """Quote like Go's strconv.Quote: `"a\\"b"`, control characters escaped, printable Unicode kept."""
    out = ['"']
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}  # fmt: skip


def go_quote_list(items: Sequence[str]) -> str:
    """Format a string slice with Go's %q: `["sh" "-c" "echo hi"]`."""
    return "[" + " ".join(go_quote(item) for item in items) + "]"


def go_duration(ns: int) -> str:
    """Format nanoseconds as Go's time.Duration.String: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1_000_000_000:
        unit, size = next((u, s) for u, s in (("ms", 10**6), ("µs", 10**3), ("ns", 1)) if ns >= s)
        return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = _decimal(rest, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    return f"{sign}{minutes}m{seconds}" if minutes else sign + seconds


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_health(health: Healthcheck) -> str:
    """Format a HealthConfig pointer with Go's %q, as moby's commit message does."""
    times = " ".join(go_quote(go_duration(ns)) for ns in (health.interval, health.timeout, health.start_period,
                                                          health.start_interval))  # fmt: skip
    retries = chr(health.retries)
    rune = f"'{retries}'" if retries.isprintable() and retries not in "'\\" else f"'\\x{health.retries:02x}'"
    return f"&{{{go_quote_list(health.test)} {times} {rune}}}"
