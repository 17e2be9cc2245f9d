"""The `busybox` base image, built from the host's static busybox (Debian's `busybox-static`).

No registry is reachable from these machines, so the first base image is made here: one layer
holding `/bin/busybox`, every applet as a hard link to it at the path `busybox --list-full`
gives, and the small `/etc` and directory skeleton of Docker's `busybox` image.

The layer is deterministic: entries in a fixed order, owned by root, all stamped with the
binary's mtime. Building it twice from the same binary gives the same layer digest and, since
the config's `created` is that mtime too, the same image ID.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from containers.engine.errors import InvalidArgument
from containers.engine.images.config import ContainerConfig, History, ImageConfig, format_time
from containers.engine.images.manifest import MEDIA_TYPE_OCI_LAYER, Descriptor, host_platform
from containers.engine.images.store import Image, ImageStore

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""

SHADOW = "".join(f"{line.split(':')[0]}:*:10933:0:99999:7:::\n" for line in PASSWD.splitlines())

# Directory skeleton (path, mode), as in Docker's busybox image.
DIRECTORIES = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "root": 0o700,
    "sbin": 0o755,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/spool": 0o755,
    "var/spool/mail": 0o755,
    "var/www": 0o755,
}

FILES = {"etc/passwd": (PASSWD, 0o644), "etc/group": (GROUP, 0o644), "etc/shadow": (SHADOW, 0o600)}


def _applets(busybox: Path) -> list[str]:
    """Return the applet paths the binary installs itself at, relative to /, `bin/busybox` excluded."""
    result = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    paths = {line.strip().lstrip("/") for line in result.stdout.splitlines() if line.strip()}
    if any(".." in p.split("/") for p in paths):
        raise InvalidArgument(f"busybox {busybox}: unexpected applet path in --list-full")
    paths.discard("bin/busybox")
    return sorted(paths)


def _version(busybox: Path) -> str:
    """Return the banner's version part, e.g. `BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)`."""
    result = subprocess.run([str(busybox)], capture_output=True, text=True, check=False)
    banner = (result.stdout or result.stderr).splitlines()[0] if (result.stdout or result.stderr) else "BusyBox"
    return banner.split(" multi-call")[0]


def _entries(busybox: Path, mtime: int) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Yield the layer's entries in order: directories, then files, then the applets' hard links."""
    applets = _applets(busybox)
    directories = dict(DIRECTORIES)
    for applet in applets:
        parent = os.path.dirname(applet)
        while parent and parent not in directories:
            directories[parent] = 0o755
            parent = os.path.dirname(parent)

    def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        entry = tarfile.TarInfo(name)
        entry.type, entry.mode, entry.size, entry.mtime = kind, mode, size, mtime
        return entry

    for name in sorted(directories):
        yield info(name, tarfile.DIRTYPE, directories[name]), None
    binary = busybox.read_bytes()
    yield info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary
    for name, (text, mode) in sorted(FILES.items()):
        yield info(name, tarfile.REGTYPE, mode, len(text)), text.encode()
    for applet in applets:
        link = info(applet, tarfile.LNKTYPE, 0o755)
        link.linkname = "bin/busybox"
        yield link, None


def busybox_layer(busybox: Path) -> bytes:
    """Return the uncompressed layer tar for `busybox`; the same binary always gives the same bytes."""
    mtime = int(busybox.stat().st_mtime)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry, data in _entries(busybox, mtime):
            tar.addfile(entry, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def create_busybox_image(
    store: ImageStore, tag: str = "busybox:latest", busybox_path: str | Path = "/usr/bin/busybox"
) -> Image:
    """Create (or find again) the busybox image from a static busybox binary and tag it."""
    busybox = Path(busybox_path)
    if not busybox.is_file():
        raise InvalidArgument(f"busybox {busybox}: not found")
    layer = busybox_layer(busybox)
    digest = store.content.write_blob(layer)
    created = format_time(datetime.fromtimestamp(int(busybox.stat().st_mtime), UTC))
    platform = host_platform()
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=created,
        config=ContainerConfig(env=(DEFAULT_PATH,), cmd=("sh",)),
        history=(History(created=created, created_by=f"{_version(busybox)}, from {busybox}"),),
        diff_ids=(digest,),
    )
    return store.create(config.to_json(), [Descriptor(MEDIA_TYPE_OCI_LAYER, digest, len(layer))], [tag])
