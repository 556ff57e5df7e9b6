"""Degradation alerts end to end: injected shift → alert → signed webhook → acknowledgement."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlmodel import Session, select

from corrigenda.db import transaction
from corrigenda.metrics import drain
from corrigenda.metrics.alerts import acknowledge, check_alerts, deliver_alerts
from corrigenda.models import FeedbackEvent, MetricAlert, Prediction, Project
from corrigenda.webhooks import verify_signature
from tests.factories import make_project, make_user

START = date(2025, 3, 1)
SHIFT_DAY = START + timedelta(days=15)


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    thread.join(5)


def traffic(engine, webhook: str) -> int:  # type: ignore[no-untyped-def]
    """16 days of 100 shown predictions: 10 % overridden, then 30 % on the last day."""
    with transaction(engine) as s:
        project = make_project(s, "alerts")
        project.policy = {
            **project.policy,
            "alerts": {
                "baseline_days": 14,
                "alpha": 0.05,
                "webhook_url": webhook,
                "webhook_secret": "whsec",
            },
        }
        s.add(project)
        for offset in range(16):
            day = START + timedelta(days=offset)
            stamp = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            overrides = 30 if day == SHIFT_DAY else 10
            for i in range(100):
                p = Prediction(
                    project_id=project.id,
                    client_id=f"{day}-{i}",
                    model_version="v1",
                    output="bug",
                    created_at=stamp,
                    shown_at=stamp,
                )
                s.add(p)
                s.flush()
                if i < overrides:
                    s.add(
                        FeedbackEvent(
                            event_id=uuid.uuid4(),
                            project_id=project.id,
                            prediction_id=p.id,
                            kind="reject",
                            end_user="u",
                            client_time=stamp,
                        )
                    )
        return project.id  # type: ignore[return-value]


def test_shift_alerts_once_signed_and_acknowledged(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    project_id = traffic(engine, receiver)
    drain(lambda: transaction(engine))
    with transaction(engine) as s:
        # First check runs from yesterday only; judge the whole range as a backfill.
        mark_from = {str(project_id): (START + timedelta(days=13)).isoformat()}
        from corrigenda.metrics.updater import lock_watermark

        lock_watermark(s).alert_days = mark_from
        created = check_alerts(s, today=SHIFT_DAY + timedelta(days=1))
    assert [(a.kind, a.day, a.model_version) for a in created] == [
        ("override_rise", SHIFT_DAY, "v1")
    ]
    with transaction(engine) as s:  # judged days are not judged again
        assert check_alerts(s, today=SHIFT_DAY + timedelta(days=1)) == []

    assert deliver_alerts(engine) == 1
    ((headers, body),) = Receiver.received
    assert verify_signature("whsec", headers["Corrigenda-Signature"], body)
    payload = json.loads(body)
    assert payload["type"] == "metrics.alert"
    assert payload["data"]["day"] == SHIFT_DAY.isoformat()
    assert payload["data"]["observed"] == pytest.approx(0.30)

    with transaction(engine) as s:
        user = make_user(s, s.get(Project, project_id), role="viewer")
        alert = s.exec(select(MetricAlert)).one()
        assert alert.webhook_sent_at is not None
        acknowledge(s, alert=alert, user=user)
    with Session(engine) as s:
        alert = s.exec(select(MetricAlert)).one()
        assert alert.acknowledged_at is not None and alert.acknowledged_by is not None


def test_stable_days_raise_no_alert(engine, receiver) -> None:  # type: ignore[no-untyped-def]
    traffic(engine, receiver)
    drain(lambda: transaction(engine))
    with transaction(engine) as s:
        assert check_alerts(s, today=SHIFT_DAY) == []  # judges the day before the shift
