from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _sqlite_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Put an SQLite database in WAL mode once per process (the mode stays with the file).

    WAL lets readers go on while one process writes; asking on every new connection would cost
    each request thread of the Docker API a query.
    """
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
        connection_created.disconnect(_sqlite_wal)


class ContainersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "containers"
    verbose_name = "Containers"

    def ready(self) -> None:
        connection_created.connect(_sqlite_wal)
