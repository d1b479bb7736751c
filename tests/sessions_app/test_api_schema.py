"""The OpenAPI schema (Swagger UI at /api/docs/) is generated without a warning."""

from __future__ import annotations

from django.core.management import call_command


def test_the_schema_validates_without_warnings(tmp_path):
    # A warning (e.g. two models' "status" choices colliding in one enum name) also fails the
    # production deploy check that CI runs.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
