"""Websocket routes: the live views of a container, a build's output, and the container events of list pages."""

from django.urls import URLPattern, re_path

from containers import consumers

websocket_urlpatterns: list[URLPattern] = [
    re_path(r"^ws/containers/(?P<container_id>[^/]+)/terminal/$", consumers.TerminalConsumer.as_asgi()),
    re_path(r"^ws/containers/(?P<container_id>[^/]+)/attach/$", consumers.AttachConsumer.as_asgi()),
    re_path(r"^ws/containers/(?P<container_id>[^/]+)/logs/$", consumers.LogsConsumer.as_asgi()),
    re_path(r"^ws/containers/(?P<container_id>[^/]+)/stats/$", consumers.StatsConsumer.as_asgi()),
    re_path(r"^ws/builds/(?P<build_id>[^/]+)/$", consumers.BuildConsumer.as_asgi()),
    re_path(r"^ws/events/$", consumers.EventsConsumer.as_asgi()),
]
