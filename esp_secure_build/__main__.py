"""``python -m esp_secure_build`` runs the CLI."""

from .cli.main import run

run()
