"""All tables. Import from here: ``from corrigenda.models import Project``."""

from sqlmodel import SQLModel

from .base import utcnow
from .dataset import AuditLog, DatasetVersion, Example
from .feedback import FeedbackEvent, Prediction
from .project import ApiKey, Membership, Project, User, default_policy
from .review import Decision, ReviewClaim, ReviewItem

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditLog",
    "DatasetVersion",
    "Decision",
    "Example",
    "FeedbackEvent",
    "Membership",
    "Prediction",
    "Project",
    "ReviewClaim",
    "ReviewItem",
    "User",
    "default_policy",
    "metadata",
    "utcnow",
]
