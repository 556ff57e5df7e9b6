"""The JSON API under ``/api/v1``.

Each feature module registers its routes on ``bp`` (``from .blueprint import bp``).
To add one, import it on the line below the split marker.
"""

from .blueprint import bp

# isort: split
from . import limits  # noqa: F401  (rate limits run before every other hook)

# isort: split
from . import cors, datasets, examples, feedback, openapi, predictions, problems  # noqa: F401

# isort: split
from . import metrics  # noqa: F401

__all__ = ["bp"]
