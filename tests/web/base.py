"""The personas every web test shares, and helpers to give their teams something to own.

- alice: admin of team red
- bob: operator of red
- vera: viewer of red
- charlie: operator of team blue, an outsider to red
- root: site admin (superuser), in no team and sees all
"""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.test import TestCase
from django.utils import timezone

from containers.choices import Role
from containers.models import Container, Image, ImageTag, Membership, Team

_ids = itertools.count(1)


class TeamTestCase(TestCase):
    """A TestCase with the personas, their teams red and blue, and factories for owned rows."""

    @classmethod
    def setUpTestData(cls) -> None:
        users = get_user_model()
        cls.red = Team.objects.create(name="red", description="the red team")
        cls.blue = Team.objects.create(name="blue", description="the blue team")
        # No passwords: hashing one costs a third of a second, and these tests do not log in.
        cls.alice = users.objects.create_user("alice")
        cls.bob = users.objects.create_user("bob")
        cls.vera = users.objects.create_user("vera")
        cls.charlie = users.objects.create_user("charlie")
        cls.root = users.objects.create_superuser("root", email="")
        Membership.objects.create(user=cls.alice, team=cls.red, role=Role.ADMIN)
        Membership.objects.create(user=cls.bob, team=cls.red, role=Role.OPERATOR)
        Membership.objects.create(user=cls.vera, team=cls.red, role=Role.VIEWER)
        Membership.objects.create(user=cls.charlie, team=cls.blue, role=Role.OPERATOR)

    @staticmethod
    def make_container(name: str, team: Team | None, **fields: Any) -> Container:
        n = next(_ids)
        fields = {"image": f"sha256:{n:064x}", "image_ref": "busybox", **fields}
        return Container.objects.create(id=f"{n:064x}", name=name, node="test", created=timezone.now(), team=team,
                                        **fields)  # fmt: skip

    @staticmethod
    def make_image(*familiar: str, team: Team | None = None, shared: bool = False) -> Image:
        """Make an image with a tag per name (e.g. `busybox:latest`), each owned by `team`."""
        image = Image.objects.create(id=f"sha256:{next(_ids):064x}", node="test", size=1024, shared=shared)
        for name in familiar:
            ImageTag.objects.create(image=image, reference=f"docker.io/library/{name}", familiar=name, team=team)
        return image
