"""Celery delivery: thin tasks that call the core, plus the in-process worker for the
embedded default. Imports neither Flask nor the web app."""
