"""The dashboard's forms: each parses what a person types into what a use case takes, with errors by field."""

from __future__ import annotations

import io
import os
import re
import shlex
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import IO, Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.files.uploadedfile import UploadedFile
from django.db import models

from containers.choices import AuditOutcome, AuditSource, Role
from containers.engine.errors import EngineError
from containers.models import ImageTag, Team

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_ENV_KEY = re.compile(r"[^\s=]+")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# Docker's floor: a smaller limit leaves the container no room to start.
MIN_MEMORY = 6 << 20
RESTART_POLICIES = [
    ("no", "Never"),
    ("on-failure", "On failure"),
    ("unless-stopped", "Unless stopped"),
    ("always", "Always"),
]
TOKEN_EXPIRY = [("30", "30 days"), ("7", "7 days"), ("90", "90 days"), ("365", "1 year"), ("", "Never")]
# Archives are kept compressed as uploaded: the builder reads gzip, bzip2 and xz itself.
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """Yield the numbered lines that say something: not blank, not a # comment."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line.strip()


def parse_key_values(text: str, what: str) -> dict[str, str]:
    """Parse `KEY=value` lines; the value may be empty or hold `=`."""
    found = {}
    for number, line in _lines(text):
        key, sep, value = line.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise forms.ValidationError(f"line {number}: {line!r} is not {what}=value")
        found[key] = value
    return found


def parse_memory(text: str) -> int:
    """Return a size such as `512m`, `1.5g` or `268435456` in bytes, as `docker run -m` reads it."""
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        raise forms.ValidationError(f"{text!r} is not a size: use a number with b, k, m or g, e.g. 256m")
    return int(Decimal(match.group(1)) * _UNITS[match.group(2).lower()])


class RunContainerForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name", empty_label=None)
    image = forms.ChoiceField(help_text="The images your team owns, and the shared ones")
    name = forms.CharField(required=False, max_length=255, help_text="Empty: a generated name")
    command = forms.CharField(
        required=False, help_text="Replaces the image's command; quote as in a shell: sh -c 'echo hi; sleep 60'"
    )
    interactive = forms.BooleanField(required=False, label="Interactive", help_text="Keep stdin open with a TTY (-it)")
    env = forms.CharField(
        required=False, label="Environment", widget=forms.Textarea(attrs={"rows": 3, "placeholder": "KEY=value"}),
        help_text="One KEY=value a line",
    )  # fmt: skip
    binds = forms.CharField(
        required=False, label="Bind mounts",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "/srv/data:/data:ro"}),
        help_text="One host-path:container-path[:ro] a line",
    )  # fmt: skip
    memory = forms.CharField(required=False, label="Memory limit", help_text="e.g. 256m or 1g; empty: no limit")
    cpus = forms.DecimalField(
        required=False, label="CPUs", min_value=Decimal("0.01"), max_digits=6, decimal_places=2,
        help_text="e.g. 0.5 or 2; empty: no limit",
    )  # fmt: skip
    pids_limit = forms.IntegerField(required=False, label="Process limit", min_value=1, help_text="Empty: no limit")
    restart = forms.ChoiceField(choices=RESTART_POLICIES, initial="no", label="Restart policy")
    max_retries = forms.IntegerField(required=False, min_value=0, label="Retries", help_text="With on failure only")
    auto_remove = forms.BooleanField(required=False, label="Remove when it exits", help_text="--rm")

    def __init__(self, *args: Any, teams: models.QuerySet[Team], image_tags: Sequence[ImageTag], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]
        groups: dict[str, list[tuple[str, str]]] = {}
        for tag in image_tags:
            groups.setdefault(tag.team.name if tag.team else "Shared", []).append((tag.familiar, tag.familiar))
        self.fields["image"].choices = [("", "Choose an image…"), *groups.items()]  # type: ignore[attr-defined]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip().lstrip("/")
        if name and not _NAME.fullmatch(name):
            raise forms.ValidationError("Use letters, digits, _ . and -, starting with a letter or digit.")
        return name

    def clean_command(self) -> list[str]:
        try:
            return shlex.split(self.cleaned_data["command"])
        except ValueError as err:
            raise forms.ValidationError(f"Cannot split the command: {err}.") from None

    def clean_env(self) -> list[str]:
        return [f"{key}={value}" for key, value in parse_key_values(self.cleaned_data["env"], "KEY").items()]

    def clean_binds(self) -> list[str]:
        binds = []
        for number, line in _lines(self.cleaned_data["binds"]):
            host, _, rest = line.partition(":")
            container, _, mode = rest.partition(":")
            if not os.path.isabs(host) or not os.path.isabs(container):
                raise forms.ValidationError(f"line {number}: both paths must be absolute, e.g. /srv/data:/data")
            if mode not in ("", "ro", "rw"):
                raise forms.ValidationError(f"line {number}: the mode {mode!r} is not ro or rw")
            binds.append(line)
        return binds

    def clean_memory(self) -> int | None:
        text = self.cleaned_data["memory"].strip()
        if not text:
            return None
        size = parse_memory(text)
        if size < MIN_MEMORY:
            raise forms.ValidationError("The smallest memory limit is 6m.")
        return size

    def clean_cpus(self) -> Decimal | None:
        cpus = self.cleaned_data["cpus"]
        available = os.cpu_count() or 1
        if cpus is not None and cpus > available:
            raise forms.ValidationError(f"This node has {available} CPUs; choose from 0.01 to {available}.")
        return cpus

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        restart = data.get("restart")
        if data.get("max_retries") is not None and restart != "on-failure":
            self.add_error("max_retries", "Retries apply to the on failure policy only.")
        if data.get("auto_remove") and restart not in (None, "no"):
            self.add_error("auto_remove", "A container removed when it exits cannot also restart.")
        return data

    def docker_config(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the Config and HostConfig the Docker API would take for this form."""
        data = self.cleaned_data
        config: dict[str, Any] = {"Image": data["image"]}
        if data["command"]:
            config["Cmd"] = data["command"]
        if data["env"]:
            config["Env"] = data["env"]
        if data["interactive"]:
            config |= {"Tty": True, "OpenStdin": True, "AttachStdin": False}
        host: dict[str, Any] = {}
        if data["binds"]:
            host["Binds"] = data["binds"]
        if data["memory"] is not None:
            host["Memory"] = data["memory"]
        if data["cpus"] is not None:
            host["NanoCpus"] = int(data["cpus"] * 1_000_000_000)
        if data["pids_limit"] is not None:
            host["PidsLimit"] = data["pids_limit"]
        if data["restart"] != "no":
            host["RestartPolicy"] = {"Name": data["restart"], "MaximumRetryCount": data["max_retries"] or 0}
        if data["auto_remove"]:
            host["AutoRemove"] = True
        return config, host

    def add_engine_error(self, err: EngineError) -> None:
        """Put a use case's refusal next to the field it is about."""
        message = str(err)
        field = "image" if message.startswith("image") else "name" if message.startswith("container name") else None
        self.add_error(field, message)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one input, as Django's documentation shows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)] if data else []


class BuildForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name", empty_label=None)
    dockerfile_text = forms.CharField(
        required=False, label="Dockerfile", strip=False,
        widget=forms.Textarea(attrs={"class": "editor", "rows": 16, "spellcheck": "false", "autocapitalize": "off"}),
        help_text="Written into the context at the path below; leave empty to use the context's own",
    )  # fmt: skip
    dockerfile = forms.CharField(initial="Dockerfile", max_length=1024, label="Dockerfile path")
    context = MultipleFileField(
        required=False, label="Context",
        help_text="A .tar (.tar.gz, .tar.bz2, .tar.xz) or .zip archive, or several files; empty: the Dockerfile alone",
    )  # fmt: skip
    tags = forms.CharField(required=False, help_text="Separated by spaces or commas, e.g. web:1.2 web:latest")
    build_args = forms.CharField(
        required=False, label="Build arguments",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "VERSION=1.2"}), help_text="One NAME=value a line",
    )  # fmt: skip
    target = forms.CharField(required=False, max_length=255, help_text="The stage to stop at; empty: the last one")
    labels = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "placeholder": "org.example.owner=web"}),
        help_text="One key=value a line",
    )  # fmt: skip
    no_cache = forms.BooleanField(required=False, label="Do not use the build cache (--no-cache)")

    def __init__(self, *args: Any, teams: models.QuerySet[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]

    def clean_dockerfile(self) -> str:
        path = self.cleaned_data["dockerfile"].strip().removeprefix("./").lstrip("/") or "Dockerfile"
        if ".." in path.split("/"):
            raise forms.ValidationError("The path must stay inside the context.")
        return path

    def clean_tags(self) -> list[str]:
        return [tag for tag in re.split(r"[\s,]+", self.cleaned_data["tags"]) if tag]

    def clean_build_args(self) -> dict[str, str]:
        return parse_key_values(self.cleaned_data["build_args"], "NAME")

    def clean_labels(self) -> dict[str, str]:
        return parse_key_values(self.cleaned_data["labels"], "key")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("dockerfile_text", "").strip() and not data.get("context"):
            self.add_error("dockerfile_text", "Write a Dockerfile, or upload a context that has one.")
        return data

    def context_tar(self) -> IO[bytes]:
        """Return the build context as one tar stream: the archive as uploaded, or one made of the files and text."""
        files: list[UploadedFile] = self.cleaned_data["context"]
        text: str = self.cleaned_data["dockerfile_text"]
        path: str = self.cleaned_data["dockerfile"]
        if len(files) == 1 and files[0].name.lower().endswith(_TAR_SUFFIXES) and not text.strip():
            files[0].seek(0)
            return files[0]
        out = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        with tarfile.open(fileobj=out, mode="w") as tar:
            skip = {path} if text.strip() else set()
            for upload in files:
                _add_upload(tar, upload, skip)
            if text.strip():
                _add_bytes(tar, path, text.encode())
        out.seek(0)
        return out

    def add_engine_error(self, err: EngineError) -> None:
        self.add_error("tags" if str(err).startswith("tag") else None, str(err))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_upload(tar: tarfile.TarFile, upload: UploadedFile, skip: set[str]) -> None:
    """Add an uploaded archive's members (tar or zip), or the file itself under its name."""
    name = (upload.name or "file").lower()
    upload.seek(0)
    if name.endswith(_TAR_SUFFIXES):
        try:
            with tarfile.open(fileobj=upload, mode="r:*") as source:
                for member in source:
                    if member.name.removeprefix("./") in skip:
                        continue
                    tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        except tarfile.TarError as err:
            raise forms.ValidationError(f"{upload.name}: not a readable tar archive ({err})") from None
    elif name.endswith(".zip"):
        try:
            with zipfile.ZipFile(upload) as source:
                for entry in source.infolist():
                    if entry.is_dir() or entry.filename in skip:
                        continue
                    # The high 16 bits of external_attr are the unix mode when the zip was made on unix.
                    mode = (entry.external_attr >> 16) & 0o7777 or 0o644
                    _add_bytes(tar, entry.filename, source.read(entry), mode)
        except zipfile.BadZipFile as err:
            raise forms.ValidationError(f"{upload.name}: not a readable zip archive ({err})") from None
    elif upload.name not in skip:
        info = tarfile.TarInfo(upload.name or "file")
        info.size, info.mode, info.mtime = upload.size or 0, 0o644, int(time.time())
        tar.addfile(info, upload)


class TeamForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Letters, digits, - and _, e.g. web-ops")
    description = forms.CharField(required=False)


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150, label="User")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def clean_username(self) -> AbstractUser:
        user = get_user_model().objects.filter(username=self.cleaned_data["username"].strip()).first()
        if user is None:
            raise forms.ValidationError("No user has this name.")
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenForm(forms.Form):
    name = forms.CharField(required=False, max_length=100, help_text="What it is for, e.g. ci or laptop")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name", empty_label=None)
    read_only = forms.BooleanField(required=False, label="Read-only", help_text="Acts as a viewer whatever your role")
    expires = forms.ChoiceField(choices=TOKEN_EXPIRY, required=False, initial="30")

    def __init__(self, *args: Any, teams: models.QuerySet[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]

    def clean_expires(self) -> timedelta | None:
        days = self.cleaned_data["expires"]
        return timedelta(days=int(days)) if days else None


class AuditFilterForm(forms.Form):
    """The audit page's filters, every one optional, with the meaning the REST API's export gives them."""

    team = forms.ModelChoiceField(
        queryset=Team.objects.none(), to_field_name="name", required=False, empty_label="All teams"
    )
    user = forms.CharField(required=False)
    action = forms.CharField(required=False, help_text="Exact, or a prefix ending with a dot: container.")
    outcome = forms.ChoiceField(choices=[("", "Any outcome"), *AuditOutcome.choices], required=False)
    source = forms.ChoiceField(choices=[("", "Any source"), *AuditSource.choices], required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Included")

    def __init__(self, *args: Any, teams: models.QuerySet[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]

    def _start(self, day: date) -> datetime:
        return datetime.combine(day, dt_time.min, tzinfo=UTC)

    def filter(self, events: models.QuerySet[Any]) -> models.QuerySet[Any]:
        data = self.cleaned_data
        if data.get("team"):
            events = events.filter(team=data["team"])
        if data.get("user"):
            events = events.filter(username=data["user"].strip())
        action = (data.get("action") or "").strip()
        if action:
            events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
        if data.get("outcome"):
            events = events.filter(outcome=data["outcome"])
        if data.get("source"):
            events = events.filter(source=data["source"])
        if data.get("since"):
            events = events.filter(time__gte=self._start(data["since"]))
        if data.get("until"):
            events = events.filter(time__lt=self._start(data["until"] + timedelta(days=1)))
        return events

    def export_query(self) -> str:
        """Return the REST API's query string for the same rows (its times are instants, `until` excluded)."""
        data = self.cleaned_data
        query = {
            "team": data["team"].name if data.get("team") else "", "user": (data.get("user") or "").strip(),
            "action": (data.get("action") or "").strip(), "outcome": data.get("outcome") or "",
            "source": data.get("source") or "",
            "since": self._start(data["since"]).isoformat() if data.get("since") else "",
            "until": self._start(data["until"] + timedelta(days=1)).isoformat() if data.get("until") else "",
        }  # fmt: skip
        return urlencode({key: value for key, value in query.items() if value})
