from .audit import AuditEvent
from .builds import Build
from .containers import Container
from .images import Image, ImageTag
from .jobs import Job
from .teams import Membership, Team
from .tokens import ApiToken

__all__ = ["ApiToken", "AuditEvent", "Build", "Container", "Image", "ImageTag", "Job", "Membership", "Team"]
