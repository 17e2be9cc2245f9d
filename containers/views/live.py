"""The live views as pages of their own, and the download of a container's whole log.

The container and build pages include the same partials (templates/containers/panels/); these
pages show one panel, all of a container's, the logs of several containers together, or a build's
output, each with nothing else around. The download goes through the container's node, as the
websockets do (containers/live/), so that it works whichever node runs the container.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from containers import usecases
from containers.live.protocol import NODE_TIMEOUT_S, OPEN_TIMEOUT_S, Close, node_channel
from containers.models import Build, Container
from containers.permissions import get_for_user

PANELS = ("terminal", "logs", "stats")


def _container(request: HttpRequest, pk: str) -> Container:
    container, _ = get_for_user(usecases.principal_for(request), Container.objects.select_related("team"), pk=pk)
    return container


@login_required
def container_live(request: HttpRequest, pk: str, panel: str = "") -> HttpResponse:
    """One live panel of a container (`panel`), or all of them."""
    if panel and panel not in PANELS:
        raise Http404(f"no live panel {panel}")
    context = {"section": "containers", "container": _container(request, pk), "panels": (panel,) if panel else PANELS}
    return render(request, "containers/live.html", context)


@login_required
def logs_together(request: HttpRequest) -> HttpResponse:
    """The logs of several containers in one view: `?id=<container>&id=<container>`."""
    containers = [_container(request, pk) for pk in dict.fromkeys(request.GET.getlist("id"))]
    if not containers:
        raise Http404("name the containers: ?id=<container>&id=<container>")
    return render(request, "containers/live_logs.html", {"section": "containers", "containers": containers})


@login_required
def build_live(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    build, _ = get_for_user(usecases.principal_for(request), Build.objects.select_related("team"), pk=pk)
    return render(request, "containers/live_build.html", {"section": "builds", "build": build})


class DownloadRefused(Exception):
    """The node did not answer (503), or the container has gone (404)."""

    def __init__(self, reason: str, status: int = 503) -> None:
        super().__init__(reason)
        self.status = status


class _LogDownload:
    """The whole log from the container's node, chunk by chunk, each acknowledged so that the node never runs ahead."""

    def __init__(self, container: Container, timestamps: bool) -> None:
        self.container = container
        self.timestamps = timestamps
        self.layer = get_channel_layer()
        self.node = node_channel(container.node)
        self.session = uuid.uuid4().hex
        self.finished = False

    async def open(self) -> None:
        self.channel = await self.layer.new_channel()
        await self._send("live.open", reply_to=self.channel, kind="download", container=self.container.id,
                         sent_at=time.time(), timestamps=self.timestamps)  # fmt: skip
        answer = await self._receive(OPEN_TIMEOUT_S)
        if answer["type"] != "live.opened":
            self.finished = True
            status = 404 if answer.get("code") == Close.NOT_FOUND else 503
            raise DownloadRefused(answer.get("reason", "the node refused"), status)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                message = await self._receive(NODE_TIMEOUT_S)
                if message["type"] == "live.data":
                    await self._send("live.ack")
                    yield message["data"]
                elif message["type"] == "live.ended":
                    self.finished = True
                    if message["code"] != 1000:
                        yield f"\n[the download stopped: {message['reason']}]\n".encode()
                    return
        finally:
            if not self.finished:
                await self._send("live.close")

    async def _send(self, message_type: str, **fields: Any) -> None:
        await self.layer.send(self.node, {"type": message_type, "session": self.session, **fields})

    async def _receive(self, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.layer.receive(self.channel), timeout)
        except TimeoutError:
            raise DownloadRefused(f"the node agent of {self.container.node} does not answer") from None


@login_required
async def logs_download(request: HttpRequest, pk: str) -> HttpResponse:
    """The container's whole log as text (`?timestamps=0` without the times), read on its node."""
    container = await sync_to_async(_container)(request, pk)
    download = _LogDownload(container, timestamps=request.GET.get("timestamps", "1") != "0")
    try:
        await download.open()
    except DownloadRefused as err:
        return HttpResponse(f"{err}\n", status=err.status, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(download.chunks(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{container.name}.log"'
    return response
