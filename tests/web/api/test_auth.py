"""Who the API lets in: sessions with CSRF for changes, bearer tokens, and nobody else."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.test import Client

from containers import accounts
from tests.web.api.base import ApiTestCase


class AuthenticationTests(ApiTestCase):
    def test_anonymous_requests_get_401_with_the_scheme_to_use(self) -> None:
        response = self.client_for().get("/api/v1/containers/")
        assert response.status_code == 401 and response["WWW-Authenticate"] == 'Bearer realm="api"'
        assert response.json() == {
            "detail": "Authentication credentials were not provided.", "code": "not_authenticated"
        }  # fmt: skip

    def test_a_malformed_unknown_or_expired_token_is_refused_not_ignored(self) -> None:
        expired, secret = accounts.mint_token(self.bob, self.red, expires_in=timedelta(seconds=1))
        type(expired).objects.filter(pk=expired.pk).update(expires_at=expired.created - timedelta(days=1))
        for header in ("Bearer nonsense", "Bearer we_0123456789ab_" + "x" * 40, f"Bearer {secret}", "Bearer a b"):
            client = self.client_for()
            client.credentials(HTTP_AUTHORIZATION=header)
            response = client.get("/api/v1/containers/")
            assert response.status_code == 401, header
            assert response.json()["code"] == "authentication_failed"

    def test_a_session_post_without_the_csrf_token_is_refused(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.bob)
        response = client.post("/api/v1/tokens/", {"name": "x"}, content_type="application/json")
        assert response.status_code == 403
        assert response.json()["detail"].startswith("CSRF Failed")
        assert not self.bob.api_tokens.exists()

    def test_a_session_post_with_the_csrf_token_goes_through(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.bob)
        client.get("/api/v1/teams/", HTTP_ACCEPT="text/html")  # a page sets the CSRF cookie: the browsable API
        csrf = client.cookies["csrftoken"].value
        response = client.post("/api/v1/tokens/", {"name": "x"}, content_type="application/json",
                               HTTP_X_CSRFTOKEN=csrf)  # fmt: skip
        assert response.status_code == 201, response.content

    def test_a_token_needs_no_csrf_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        _, secret = accounts.mint_token(self.bob, self.red)
        response = client.post("/api/v1/tokens/", {"name": "x"}, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {secret}")  # fmt: skip
        assert response.status_code == 201

    def test_a_read_only_token_reads_but_cannot_change_anything(self) -> None:
        client = self.token_client(self.alice, self.red, read_only=True)
        assert client.get("/api/v1/containers/").status_code == 200
        response = client.post("/api/v1/tokens/", {"name": "x"}, format="json")
        assert response.status_code == 403
        assert response.json() == {"detail": "a read-only token cannot change anything", "code": "permission_denied"}
        event = self.last_event("api.write")
        assert (event.user, event.team, event.outcome, event.target_name) == (
            self.alice, self.red, "denied", "POST /api/v1/tokens/"
        )  # fmt: skip

    def test_a_deactivated_users_session_is_refused(self) -> None:
        client = self.client_for(self.bob)
        get_user_model().objects.filter(pk=self.bob.pk).update(is_active=False)
        assert client.get("/api/v1/containers/").status_code in (401, 403)
