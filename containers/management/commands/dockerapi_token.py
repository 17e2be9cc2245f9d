"""Make the Docker API's admin token for TCP clients, and print it once."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from containers.dockerapi import auth


class Command(BaseCommand):
    help = (
        "Make a new admin token for the Docker API over TCP (the previous one stops working) and print it once; "
        "only its SHA-256 is kept, in the state root."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        token = auth.make_token(settings.WEBENGINE_ROOT)
        self.stdout.write(token)
        self.stderr.write(
            'Put it in ~/.docker/config.json as {"HttpHeaders": {"Authorization": "Bearer <token>"}}, '
            "or set it on docker-py's client.api.headers; it is not shown again."
        )
