from django.db import models


class ContainerStatus(models.TextChoices):
    """Docker's container states, as `docker ps` reports them."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"
