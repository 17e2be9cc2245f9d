"""Filters the dashboard's templates use to print sizes, limits and durations as people read them."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def ibytes(value: int | None) -> str:
    """Format a limit in binary units, as limits are typed (`256m` is 256 MiB); 0, no limit, is blank."""
    if not value:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.4g} {unit}"
        size /= 1024
    return f"{size:.4g} TiB"


@register.filter
def cpus(nano: int | None) -> str:
    """Format NanoCpus as `docker run --cpus` takes it: 1500000000 is 1.5."""
    if not nano:
        return ""
    return f"{nano / 1_000_000_000:g}"


@register.filter
def duration(seconds: float | timedelta | None) -> str:
    """Format a duration compactly: 850ms, 12.3s, 4m 05s, 2h 10m."""
    if seconds is None:
        return ""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def elapsed(obj: object) -> str:
    """Format how long a job or build ran (so far, if it still runs), from its started_at and finished_at."""
    started = getattr(obj, "started_at", None)
    if started is None:
        return ""
    return duration((getattr(obj, "finished_at", None) or timezone.now()) - started)


@register.filter
def ago(when: datetime | None) -> str:
    """Say how long ago a moment was, as `just now` under a minute rather than `0 minutes ago`."""
    if when is None:
        return ""
    if (timezone.now() - when).total_seconds() < 60:
        return "just now"
    return f"{timesince(when)} ago"
