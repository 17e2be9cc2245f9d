"""The containers page and GET /api/v1/containers/, 50 rows each, with 500 containers of the team in the database.

    .venv/bin/python bench/container_list.py [--requests 200] [--containers 500]

Runs Django in this process against a private SQLite database under a fresh WEBENGINE_ROOT in
/tmp (removed afterwards), through Django's test client: the whole request path (session or
token, the user's roles, permission scoping, counts, filtering, pagination, rendering or
serialisation) but no socket. Another team owns as many containers again, so that scoping has
rows to exclude. The page goes through pages 1 to 10, a state filter and a search in turn; the API
through its pages with a read-only token. Prints p50 and p95 of each; the target is p95 < 100 ms.
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_P95_MS = 100.0
WARMUP = 10


def setup(root: Path) -> None:
    os.environ["WEBENGINE_ROOT"] = str(root)
    os.environ["DATABASE_URL"] = f"sqlite:///{root / 'bench.sqlite3'}"
    os.environ["NODE_NAME"] = "bench"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.pop("DEBUG", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webengine.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(count: int) -> Any:
    """Make teams red and blue with `count` containers each; return a red operator."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from containers.choices import ContainerStatus, Role
    from containers.models import Container, Membership, Team

    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    user = get_user_model().objects.create_user("bench")
    Membership.objects.create(user=user, team=red, role=Role.OPERATOR)
    statuses = [ContainerStatus.RUNNING, ContainerStatus.EXITED, ContainerStatus.CREATED]
    now = timezone.now()
    rows = [
        Container(id=f"{team.pk:02x}{n:062x}", name=f"{team.name}-{n}", node="bench", image=f"sha256:{n:064x}",
                  image_ref="busybox:latest", command="sleep 3600", status=statuses[n % 3], created=now,
                  labels={"app": f"app-{n % 10}"}, team=team)
        for team in (red, blue) for n in range(count)
    ]  # fmt: skip
    Container.objects.bulk_create(rows, batch_size=500)
    return user


def timed(get: Callable[[int], Any], ok: Callable[[Any], bool], requests: int) -> list[float]:
    """Time `get(i)` `requests` times after a warm-up; stop if an answer is not `ok`."""
    samples = []
    for i in range(WARMUP + requests):
        started = time.perf_counter()
        response = get(i)
        elapsed = time.perf_counter() - started
        if not ok(response):
            raise SystemExit(f"unexpected answer {response.status_code}: {response.content[:200]!r}")
        if i >= WARMUP:
            samples.append(elapsed)
    return sorted(samples)


def measure_page(user: Any, requests: int) -> list[float]:
    from django.test import Client

    client = Client()
    client.force_login(user)
    queries = [{"page": str(page)} for page in range(1, 11)] + [{"state": "running"}, {"q": "red-4"}]
    return timed(
        lambda i: client.get("/containers/", queries[i % len(queries)]),
        lambda r: r.status_code == 200 and b"red-" in r.content and b"blue-" not in r.content,
        requests,
    )


def measure_api(user: Any, requests: int) -> list[float]:
    from django.test import Client

    from containers import accounts
    from containers.models import Team

    _, token = accounts.mint_token(user, Team.objects.get(name="red"), "bench", read_only=True)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    return timed(
        lambda i: client.get("/api/v1/containers/", {"limit": 50, "offset": (i * 50) % 500}),
        lambda r: r.status_code == 200 and len(r.json()["results"]) == 50,
        requests,
    )


def report(what: str, samples: list[float]) -> bool:
    p50 = statistics.median(samples) * 1000
    p95 = samples[int(len(samples) * 0.95) - 1] * 1000
    print(f"{what}: p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p95 < {TARGET_P95_MS:.0f} ms)")
    return p95 < TARGET_P95_MS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--containers", type=int, default=500)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="webengine-bench-list-", dir="/tmp"))
    try:
        setup(root)
        user = populate(args.containers)
        page, api = measure_page(user, args.requests), measure_api(user, args.requests)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    scale = f"50 rows, {args.containers} containers of the team, {args.requests} requests"
    met = [report(f"GET /containers/ (the page, {scale})", page), report(f"GET /api/v1/containers/ ({scale})", api)]
    if not all(met):
        sys.exit(1)


if __name__ == "__main__":
    main()
