"""The OpenAPI schema generates without a warning and validates; the docs page works with no network."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import yaml
from django.core.management import call_command
from django.test import TestCase


class SchemaTests(TestCase):
    def test_the_schema_validates_without_warnings(self) -> None:
        out = Path(self.enterContext(tempfile.TemporaryDirectory())) / "schema.yaml"
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
        schema = yaml.safe_load(out.read_text())
        assert schema["openapi"].startswith("3.")
        paths = set(schema["paths"])
        for path in ["/api/v1/containers/{id}/stop/", "/api/v1/images/{id}/", "/api/v1/builds/{id}/cancel/",
                     "/api/v1/jobs/{id}/", "/api/v1/teams/{name}/members/{username}/", "/api/v1/tokens/{id}/",
                     "/api/v1/audit/export.csv"]:  # fmt: skip
            assert path in paths, f"{path} missing from the schema"
        assert schema["components"]["securitySchemes"]["tokenAuth"] == {
            "type": "http", "scheme": "bearer", "bearerFormat": "we_<prefix>_<secret>",
            "description": "An API token from /api/v1/tokens/ or `manage.py token create`.",
        }  # fmt: skip
        stop = schema["paths"]["/api/v1/containers/{id}/stop/"]["post"]
        assert set(stop["responses"]) >= {"202", "403", "404"}

    def test_the_schema_is_served(self) -> None:
        response = self.client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert response.status_code == 200 and response.json()["info"]["title"] == "webengine API"

    def test_the_docs_page_loads_swagger_ui_from_this_server(self) -> None:
        response = self.client.get("/api/docs/")
        assert response.status_code == 200
        html = response.content.decode()
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
        bundle = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
        served = self.client.get(bundle)
        assert served.status_code == 200 and len(b"".join(served.streaming_content)) > 100_000
        assert "/api/schema/" in html
