"""All tables. Import from here: ``from corrigenda.models import Project``."""

from sqlmodel import SQLModel

from .base import utcnow
from .cluster import Cluster, ClusterContent, EffectiveOpinion, EndUserStatus
from .dataset import AuditLog, DatasetVersion, Example
from .feedback import FeedbackEvent, PendingEvent, Prediction
from .metrics import MetricAlert, MetricFact, MetricRollup, MetricWatermark
from .project import ApiKey, Membership, Project, User, default_policy
from .review import Decision, ReviewClaim, ReviewItem

metadata = SQLModel.metadata

__all__ = [
    "ApiKey",
    "AuditLog",
    "Cluster",
    "ClusterContent",
    "DatasetVersion",
    "Decision",
    "EffectiveOpinion",
    "EndUserStatus",
    "Example",
    "FeedbackEvent",
    "Membership",
    "MetricAlert",
    "MetricFact",
    "MetricRollup",
    "MetricWatermark",
    "PendingEvent",
    "Prediction",
    "Project",
    "ReviewClaim",
    "ReviewItem",
    "User",
    "default_policy",
    "metadata",
    "utcnow",
]
