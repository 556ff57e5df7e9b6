"""The demo project behind ``corrigenda up --demo``: a pretend support tool's ticket router."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from .keys import create_api_key
from .models import Prediction, Project
from .projects import create_project, get_project
from .settings import Settings

DEMO_SLUG = "demo"
LABELS = ["billing", "bug", "feature request", "account", "other"]
TICKETS = [
    ("I was charged twice for my subscription this month", "billing", 0.93),
    ("The export button does nothing when I click it", "bug", 0.88),
    ("Could you add a dark theme to the dashboard?", "feature request", 0.81),
    ("I can't log in after resetting my password", "bug", 0.52),
    ("Please change the email address on my account", "billing", 0.47),
    ("Your app crashes every time I upload a PDF", "bug", 0.95),
    ("Do you offer a discount for non-profits?", "other", 0.39),
    ("It would be great to export reports as Excel files", "bug", 0.58),
    ("How do I delete my account and all my data?", "account", 0.74),
    ("My invoice shows the wrong company name", "account", 0.44),
]


def demo_file(settings: Settings) -> Path:
    return settings.data_dir / "demo.json"


def seed(session: Session, *, settings: Settings) -> dict[str, Any]:
    """Create the demo project, keys and predictions once; return the saved demo facts."""
    path = demo_file(settings)
    project = get_project(session, DEMO_SLUG)
    if project is not None and path.exists():
        return json.loads(path.read_text())
    project = project or create_project(
        session,
        slug=DEMO_SLUG,
        name="Support ticket router (demo)",
        labels=LABELS,
        allowed_origins=_local_origins(settings),
    )
    _, publishable = create_api_key(session, project=project, kind="publishable", name="demo page")
    _, secret = create_api_key(session, project=project, kind="secret", name="demo backend")
    _add_predictions(session, project)
    facts = {"project": DEMO_SLUG, "publishable_key": publishable, "secret_key": secret}
    _write_private(path, json.dumps(facts, indent=2))
    return facts


def demo_predictions(session: Session) -> list[Prediction]:
    project = get_project(session, DEMO_SLUG)
    if project is None:
        return []
    query = select(Prediction).where(Prediction.project_id == project.id).order_by(Prediction.id)
    return list(session.exec(query))


def _add_predictions(session: Session, project: Project) -> None:
    for number, (text, label, confidence) in enumerate(TICKETS, start=1):
        alternatives = [
            {"label": other, "score": round((1 - confidence) / 4, 3)}
            for other in LABELS
            if other != label
        ][:2]
        session.add(
            Prediction(
                project_id=project.id,
                client_id=f"ticket-{number}",
                model_version="router-v1",
                input={"text": text},
                output=label,
                confidence=confidence,
                alternatives=[{"label": label, "score": confidence}, *alternatives],
                segment={"plan": "pro" if number % 3 else "free"},
            )
        )
    session.flush()


def _local_origins(settings: Settings) -> list[str]:
    origins = {
        settings.public_url().rstrip("/"),
        f"http://127.0.0.1:{settings.port}",
        f"http://localhost:{settings.port}",
    }
    return sorted(origins)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
