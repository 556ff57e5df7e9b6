"""The ``corrigenda`` command: management commands, and clear one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from corrigenda.db import make_engine, transaction
from corrigenda.keys import find_active_key
from corrigenda.models import FeedbackEvent, PendingEvent, Prediction
from corrigenda.processing import mark_pending
from corrigenda.projects import get_project
from corrigenda.users import authenticate
from tests.services import wait_for


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corrigenda", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {"CORRIGENDA_DATA_DIR": str(tmp_path / "data")}
    assert run_cli("migrate", env=env).returncode == 0
    return env


def test_help_everywhere() -> None:
    for command in (
        [],
        ["up"],
        ["worker"],
        ["migrate"],
        ["user", "create"],
        ["project", "create"],
        ["key", "create"],
    ):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_project_user_and_key_commands_write_to_the_database(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert (
        run_cli(
            "project", "create", "tickets", "--label", "bug", "--label", "billing", env=cli_env
        ).returncode
        == 0
    )
    user = run_cli(
        "user",
        "create",
        "--email",
        "Ana@Example.com",
        "--password",
        "long enough pw",
        "--project",
        "tickets",
        "--role",
        "admin",
        env=cli_env,
    )
    assert user.returncode == 0, user.stderr
    key = run_cli("key", "create", "tickets", "--kind", "secret", env=cli_env)
    assert key.returncode == 0, key.stderr
    plaintext = key.stdout.strip()
    assert plaintext.startswith("sk_")

    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'corrigenda.db'}")
    with transaction(engine) as session:
        project = get_project(session, "tickets")
        assert project is not None and project.labels == ["bug", "billing"]
        assert authenticate(session, email="ana@example.com", password="long enough pw") is not None
        found = find_active_key(session, plaintext)
        assert found is not None and found.project_id == project.id
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["project", "create", "Bad Slug"], "slug 'Bad Slug' is not valid"),
        (["key", "create", "missing", "--kind", "secret"], "no project 'missing'"),
        (["user", "create", "--email", "a@b.c", "--password", "short"], "at least 8 characters"),
    ],
)
def test_bad_requests_are_one_clear_line(
    cli_env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run_cli(*args, env=cli_env)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        (
            {"CORRIGENDA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            ["migrate"],
            "cannot use the database",
        ),
        ({"CORRIGENDA_DATA_DIR": "/proc/corrigenda"}, ["migrate"], "is not writable"),
        ({"CORRIGENDA_PORT": "not-a-port"}, ["migrate"], "CORRIGENDA_PORT"),
        ({}, ["up", "--port", "70000"], "70000 is not in the range"),
        ({}, ["worker"], "needs a broker"),
    ],
)
def test_bad_configuration_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run_cli(*args, env={"CORRIGENDA_DATA_DIR": str(tmp_path / "d"), **env})
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("up", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0
    assert f"port {port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


class RunningServer:
    """``corrigenda up`` as a real child process on a free port."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"up-{self.port}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "corrigenda",
            "up",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            *args,
        ]
        self.process = subprocess.Popen(
            command,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "CORRIGENDA_SWEEP_INTERVAL_SECONDS": "0.5"},
        )
        wait_for(self._healthy, timeout=60, message=f"server did not start: {self.output()}")

    def _healthy(self) -> bool:
        assert self.process.poll() is None, self.output()
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(30)


def test_up_demo_serves_health_login_and_the_demo_page(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "data", "--demo")
    try:
        banner = server.output()
        assert f"Corrigenda is running at http://127.0.0.1:{server.port}" in banner
        assert "log in as admin@example.com with password" in banner
        assert httpx.get(f"{server.url}/login").status_code == 200
        demo = httpx.get(f"{server.url}/demo")
        assert demo.status_code == 200
        assert "<corrigenda-feedback" in demo.text and "/widget.js" in demo.text
        assert httpx.get(f"{server.url}/widget.js").status_code == 200
    finally:
        assert server.stop() == 0


def test_a_restart_processes_events_committed_before_it(tmp_path: Path) -> None:
    """Events committed but not processed when the process died are picked up on start."""
    data_dir = tmp_path / "data"
    server = RunningServer(data_dir, "--demo")
    server.stop()
    engine = make_engine(f"sqlite:///{data_dir / 'corrigenda.db'}")
    with transaction(engine) as session:
        prediction = session.exec(
            select(Prediction).where(Prediction.client_id == "ticket-2")
        ).one()
        event = FeedbackEvent(
            event_id=uuid.uuid4(),
            project_id=prediction.project_id,
            prediction_id=prediction.id,
            kind="correct",
            value="feature request",
            end_user="u-1",
            source="api",
        )
        session.add(event)
        session.flush()
        event_id = event.id
        mark_pending(session, event_ids=[event_id])

    def processed() -> bool:
        with transaction(engine) as session:
            return session.get(PendingEvent, event_id) is None

    server = RunningServer(data_dir)
    try:
        wait_for(processed, timeout=30, message="the committed event was never processed")
    finally:
        server.stop()
        engine.dispose()
