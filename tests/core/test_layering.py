"""Dependencies point inward: the core package never pulls in Flask or Celery."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import corrigenda

# The CLI is the composition root: it starts the web app and workers, importing them lazily.
COMPOSITION_ROOT = ("corrigenda.cli", "corrigenda.__main__")


def core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(corrigenda.__path__, "corrigenda.")]
    return [n for n in names if not n.startswith(COMPOSITION_ROOT)]


def test_core_imports_neither_flask_nor_celery() -> None:
    modules = core_modules()
    assert "corrigenda.models" in modules and "corrigenda.processing" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('flask', 'celery', 'webapp', 'workers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_cli_loads_the_delivery_layers_only_when_a_command_needs_them() -> None:
    script = "import sys, corrigenda.cli; print('flask' in sys.modules, 'celery' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "False False", result.stderr
