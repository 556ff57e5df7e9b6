"""``pip install .`` on a machine without Node serves everything: the wheel carries the
templates, static files, the built widget, the API docs template and the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = [
    "webapp/templates/base.html",
    "webapp/templates/home/demo.html",
    "webapp/static/htmx.min.js",
    "webapp/widget/static/widget.js",
    "migrations/env.py",
    "migrations/script.py.mako",
    "migrations/versions/0001_create_initial_tables.py",
]


def test_the_wheel_carries_templates_static_files_widget_and_migrations(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("corrigenda-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [path for path in REQUIRED if path not in names]
    assert missing == []
    assert any(n.startswith("webapp/api/templates/") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
