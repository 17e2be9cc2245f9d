"""Operate the node's image store from the command line, like `docker image ...`."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.timesince import timesince

from containers import services
from containers.engine.errors import EngineError
from containers.templatetags.humanize_bytes import human_bytes


class Command(BaseCommand):
    help = "Manage images: ls, inspect, create-busybox, import, load, save, tag, rm, prune."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("ls", help="list images")
        ls.add_argument("-q", "--quiet", action="store_true", help="only IDs")
        ls.add_argument("--no-trunc", action="store_true")
        sub.add_parser("inspect", help="show an image as JSON").add_argument("ref")
        sub.add_parser("create-busybox", help="(re)create busybox:latest from the host's static busybox").add_argument(
            "--busybox", default="/usr/bin/busybox"
        )
        imp = sub.add_parser("import", help="import a rootfs tarball (docker import)")
        imp.add_argument("file", help="tarball path, or - for stdin")
        imp.add_argument("reference", nargs="?")
        imp.add_argument("-c", "--change", action="append", default=[])
        imp.add_argument("-m", "--message", default="")
        load = sub.add_parser("load", help="load a docker save archive or an OCI layout tar")
        load.add_argument("-i", "--input", default="-")
        save = sub.add_parser("save", help="save images (docker save, or an OCI layout directory)")
        save.add_argument("-o", "--output", required=True)
        save.add_argument("--format", choices=["docker", "oci-dir"], default="docker")
        save.add_argument("refs", nargs="+")
        tag = sub.add_parser("tag", help="add a tag to an image")
        tag.add_argument("source")
        tag.add_argument("target")
        rm = sub.add_parser("rm", help="untag or delete images, as docker rmi")
        rm.add_argument("-f", "--force", action="store_true")
        rm.add_argument("refs", nargs="+")
        sub.add_parser("prune", help="remove blobs and snapshots that no image uses")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, "_" + action.replace("-", "_"))(**options)
        except EngineError as err:
            raise CommandError(str(err)) from err

    def _ls(self, quiet: bool, no_trunc: bool, **options: Any) -> None:
        images = services.engine().images.list()
        if quiet:
            for image in images:
                self.stdout.write(image.id if no_trunc else image.short_id)
            return
        rows = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
        now = datetime.now(UTC)
        for image in images:
            created = f"{timesince(image.created, now, depth=1)} ago" if image.created else "N/A"
            ident = image.id if no_trunc else image.short_id
            for tag in image.repo_tags or ("<none>:<none>",):
                repository, _, name = tag.rpartition(":")
                rows.append((repository, name, ident, created, human_bytes(image.size)))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            self.stdout.write("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def _inspect(self, ref: str, **options: Any) -> None:
        image = services.engine().images.get(ref)
        self.stdout.write(json.dumps(dataclasses.asdict(image), default=str, indent=2))

    def _create_busybox(self, busybox: str, **options: Any) -> None:
        image = services.create_busybox_image(busybox)
        self.stdout.write(f"busybox:latest {image.id} {human_bytes(image.size)}")

    def _import(self, file: str, reference: str | None, change: list[str], message: str, **options: Any) -> None:
        tags = [reference] if reference else []
        if file == "-":
            image = services.import_image(sys.stdin.buffer, tags, change, message)
        else:
            with open(file, "rb") as stream:
                image = services.import_image(stream, tags, change, message)
        self.stdout.write(image.id)

    def _load(self, input: str, **options: Any) -> None:
        if input == "-":
            images = services.load_images(sys.stdin.buffer)
        else:
            with open(input, "rb") as stream:
                images = services.load_images(stream)
        for image in images:
            for tag in image.repo_tags or (image.id,):
                self.stdout.write(f"Loaded image: {tag}" if tag != image.id else f"Loaded image ID: {image.id}")

    def _save(self, output: str, format: str, refs: list[str], **options: Any) -> None:
        if format == "oci-dir":
            services.save_images_oci(refs, Path(output))
            return
        path = Path(output)
        tmp = path.with_name(path.name + ".partial")
        try:
            with open(tmp, "wb") as out:
                services.save_images(refs, out)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def _tag(self, source: str, target: str, **options: Any) -> None:
        services.tag_image(source, target)

    def _rm(self, force: bool, refs: list[str], **options: Any) -> None:
        failed = False
        for ref in refs:
            try:
                for line in services.remove_image(ref, force=force):
                    for key, value in line.items():
                        self.stdout.write(f"{key}: {value}")
            except EngineError as err:
                self.stderr.write(f"Error response from daemon: {err}")
                failed = True
        if failed:
            raise CommandError("some images could not be removed")

    def _prune(self, **options: Any) -> None:
        result = services.prune_images()
        self.stdout.write(", ".join(f"{key}: {value}" for key, value in result.items()))
