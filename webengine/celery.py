"""The Celery app. Each node agent is a worker consuming its node's queue, `node.<name>`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webengine.settings")

app = Celery("webengine")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
