"""Client methods for logging predictions and sending feedback."""


class IngestMixin:
    pass
