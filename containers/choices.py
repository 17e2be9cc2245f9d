from django.db import models


class ContainerStatus(models.TextChoices):
    """Docker's container states, as `docker ps` reports them."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"


class BuildStatus(models.TextChoices):
    """Where a build is: waiting for its node, running, or finished one way or another."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Role(models.TextChoices):
    """A member's role in a team, from least to most: each one can do all that the one before it can.

    A viewer sees and reads logs; an operator also runs, stops, execs, builds and pulls; an admin
    also manages members and tokens and deletes. Compare roles by rank, not as strings.
    """

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def __lt__(self, other: object) -> bool:
        return self.rank < Role(other).rank

    def __le__(self, other: object) -> bool:
        return self.rank <= Role(other).rank

    def __gt__(self, other: object) -> bool:
        return self.rank > Role(other).rank

    def __ge__(self, other: object) -> bool:
        return self.rank >= Role(other).rank


class JobKind(models.TextChoices):
    """The long operations that run as jobs on a node."""

    BUILD = "build"
    PULL = "pull"
    PUSH = "push"
    COMMIT = "commit"
    RUN = "run"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    KILL = "kill"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    REMOVE = "remove"
    IMPORT = "import"
    PRUNE = "prune"


class JobStatus(models.TextChoices):
    """Where a job is: an expected failure is *failed*, a surprise (a traceback) is *errored*."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ERRORED = "errored"


class AuditSource(models.TextChoices):
    """The edge a recorded action came through."""

    WEB = "web"
    API = "api"
    DOCKER = "docker"
    WEBSOCKET = "websocket"
    CLI = "cli"


class AuditOutcome(models.TextChoices):
    """How a recorded action ended: done, refused by the permission check, or tried and failed."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"
