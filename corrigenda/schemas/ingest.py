"""Request and response models for logging predictions and sending feedback."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
)

MAX_PREDICTIONS_PER_REQUEST = 1000
MAX_EVENTS_PER_REQUEST = 500
MAX_INPUT_TEXT = 20_000
MAX_VALUE_TEXT = 20_000
MAX_COMMENT = 2_000
MAX_EXPLANATION = 10_000
MAX_ID = 200
MAX_LABEL = 200
MAX_ALTERNATIVES = 50
MAX_SEGMENT_KEYS = 50
MAX_FIELDS_KEYS = 100

EventKind = Literal["view", "accept", "reject", "correct", "flag"]

Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID)]
ShortText = Annotated[StrictStr, Field(max_length=MAX_ID)]
Label = Annotated[StrictStr, Field(min_length=1, max_length=MAX_LABEL)]
Score = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
# A label (classification), a list of labels (multilabel) or a text (text task type).
Output = StrictStr | list[Label] | None
SegmentValue = StrictStr | StrictInt | Annotated[float, Field(allow_inf_nan=False)] | bool | None


def _iso_string(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    return value


IsoTime = Annotated[AwareDatetime | None, BeforeValidator(_iso_string)]


class Strict(BaseModel):
    """Unknown fields are rejected, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class PredictionInput(Strict):
    text: Annotated[StrictStr, Field(max_length=MAX_INPUT_TEXT)] | None = None
    fields: Annotated[dict[str, Any], Field(max_length=MAX_FIELDS_KEYS)] = {}


class Alternative(Strict):
    label: Label
    score: Score


class PredictionIn(Strict):
    """One prediction the product served. ``id`` is the product's own id for it."""

    id: Id
    model_version: ShortText = ""
    input: PredictionInput
    output: Output = None
    confidence: Score | None = None
    alternatives: Annotated[list[Alternative], Field(max_length=MAX_ALTERNATIVES)] | None = None
    segment: Annotated[dict[str, SegmentValue], Field(max_length=MAX_SEGMENT_KEYS)] = {}
    explanation: Annotated[StrictStr, Field(max_length=MAX_EXPLANATION)] | None = None
    shadow_of: Id | None = Field(
        default=None, description="client id of the production prediction this one shadows"
    )
    end_user: ShortText | None = Field(
        default=None, description="pseudonymous end-user id bound into the feedback token"
    )

    def content(self) -> dict[str, Any]:
        """The stored content, compared when the same id is logged again."""
        return {
            "model_version": self.model_version,
            "input": self.input.model_dump(),
            "output": self.output,
            "confidence": self.confidence,
            "alternatives": (
                [a.model_dump() for a in self.alternatives] if self.alternatives else None
            ),
            "segment": self.segment,
            "explanation": self.explanation,
            "shadow_of": self.shadow_of,
        }


class PredictionBatch(Strict):
    predictions: Annotated[
        list[PredictionIn], Field(min_length=1, max_length=MAX_PREDICTIONS_PER_REQUEST)
    ]


class PredictionResult(BaseModel):
    id: str
    status: Literal["created", "unchanged"]
    token: str = Field(description="signed feedback token to hand to the widget")


class PredictionsResponse(BaseModel):
    predictions: list[PredictionResult]


class FeedbackEventIn(Strict):
    """One opinion on a prediction. ``id`` is a UUID the sender makes (idempotency key)."""

    id: uuid.UUID
    prediction: Id | None = Field(
        default=None, description="client id of the prediction (may be omitted with a token)"
    )
    token: Annotated[StrictStr, Field(max_length=1000)] | None = Field(
        default=None, description="feedback token of the prediction; required with a pk_ key"
    )
    kind: EventKind
    value: StrictStr | list[Label] | None = Field(
        default=None,
        description="the corrected label (classification), labels (multilabel) or text",
    )
    comment: Annotated[StrictStr, Field(max_length=MAX_COMMENT)] | None = None
    end_user: ShortText | None = None
    session: ShortText | None = None
    client_time: IsoTime = None
    time_to_decision_ms: Annotated[StrictInt, Field(ge=0, le=7 * 24 * 3600 * 1000)] | None = None


class FeedbackBatch(Strict):
    events: Annotated[list[FeedbackEventIn], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]


class FeedbackResult(BaseModel):
    id: str | None = Field(description="the event id as sent (null if it was missing)")
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    errors: list[dict[str, str]] | None = None


class FeedbackResponse(BaseModel):
    results: list[FeedbackResult] = Field(description="one result per event, in request order")


class FeedbackContext(BaseModel):
    """What the widget needs to show one signed prediction."""

    prediction: str
    task_type: Literal["classification", "multilabel", "text"]
    labels: list[str]
    output: Any
    alternatives: list[Alternative] | None = None
