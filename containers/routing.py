"""Websocket routes. The live views (terminal, logs, stats) add theirs here."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
