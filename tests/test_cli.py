"""The ``corrigenda`` command: management commands, and clear one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from corrigenda.db import make_engine, transaction
from corrigenda.keys import find_active_key
from corrigenda.projects import get_project
from corrigenda.users import authenticate


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
