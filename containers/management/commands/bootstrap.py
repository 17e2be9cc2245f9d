"""First-run setup that `make run` performs after migrating: the busybox base and the first admin."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from containers import services
from containers.engine.errors import ImageNotFound
from containers.models import Image


class Command(BaseCommand):
    help = (
        "Create the busybox:latest base image if it is absent, and the first admin user if there is none "
        "(name from WEBENGINE_ADMIN_USER, default admin; password from WEBENGINE_ADMIN_PASSWORD, else generated "
        "and printed once). Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        busybox = self._busybox()
        self._admin()
        services.sync_images()
        # The base image every team runs from: shared, so that every team sees it.
        Image.objects.filter(id=busybox).update(shared=True)

    def _busybox(self) -> str:
        try:
            image = services.engine().images.get("busybox:latest")
        except ImageNotFound:
            image = services.create_busybox_image()
            self.stdout.write(f"created busybox:latest {image.id}")
            return image.id
        self.stdout.write(f"busybox:latest is present ({image.id})")
        return image.id

    def _admin(self) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        name = os.environ.get("WEBENGINE_ADMIN_USER", "admin")
        password = os.environ.get("WEBENGINE_ADMIN_PASSWORD")
        users.objects.create_superuser(name, email="", password=password or (generated := secrets.token_urlsafe(12)))
        if password:
            self.stdout.write(f"created admin user {name!r} with the password from WEBENGINE_ADMIN_PASSWORD")
        else:
            self.stdout.write(self.style.WARNING(f"created admin user {name!r}, password: {generated}  (shown once)"))
