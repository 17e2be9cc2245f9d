"""Images and tags: the database's copy of the engine's image store, for listing and ownership."""

from __future__ import annotations

from django.db import models

__all__ = ["Image", "ImageTag"]


class Image(models.Model):
    """An image in a node's store, by its ID (the digest of its config, as Docker computes it).

    The store on the node owns the bytes; this row is a cache that `services.sync_images`
    refreshes, so that pages can list and filter without asking the node.
    """

    id = models.CharField(primary_key=True, max_length=71)
    node = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Sum of the uncompressed layer sizes, as Docker's Size")
    created = models.DateTimeField(null=True, blank=True)
    architecture = models.CharField(max_length=32, blank=True)
    os = models.CharField(max_length=32, blank=True)
    layers = models.PositiveIntegerField(default=0)
    config = models.JSONField(default=dict, help_text="The image config's `config` object (Cmd, Env, ...)")
    layer_list = models.JSONField(
        default=list, help_text="The layers, base first: digest, diff_id, size (unpacked) and compressed size"
    )
    history = models.JSONField(default=list, help_text="The config's history, oldest first, with each layer's size")
    synced = models.DateTimeField(auto_now=True)
    shared = models.BooleanField(default=False, help_text="Visible to every team, e.g. the busybox base")
    # Images are owned through their tags; this keeps one without tags (a commit or build without
    # one, or the image a moved tag left) its maker's, to see, run and prune.
    team = models.ForeignKey(
        "containers.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="images",
        help_text="The team whose job stored it",
    )  # fmt: skip

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.short_id

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


class ImageTag(models.Model):
    """A reference such as `docker.io/library/busybox:latest` that names an image."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="tags")
    reference = models.CharField(max_length=512, unique=True, help_text="Fully qualified reference")
    familiar = models.CharField(max_length=512, help_text="As Docker prints it, e.g. busybox:latest")
    team = models.ForeignKey(
        "containers.Team", on_delete=models.PROTECT, null=True, blank=True, related_name="image_tags"
    )

    class Meta:
        ordering = ["familiar"]

    def __str__(self) -> str:
        return self.familiar
