"""/api/v1/tokens/: your own tokens; the secret is shown once, lists show the prefix, revoking ends it."""

from __future__ import annotations

from containers import accounts
from containers.models import ApiToken
from tests.web.api.base import ApiTestCase

LIST = "/api/v1/tokens/"


class TokenTests(ApiTestCase):
    def test_it_shows_the_secret_once_and_the_token_works(self) -> None:
        response = self.client_for(self.bob).post(
            LIST, {"name": "ci", "read_only": True, "expires_in_days": 30}, format="json"
        )
        assert response.status_code == 201
        body = response.json()
        token = ApiToken.objects.get(pk=body["id"])
        assert body["token"].startswith(f"we_{token.prefix}_") and body["team"] == "red" and body["read_only"]
        assert body["state"] == "active" and body["expires_at"] is not None
        assert self.last_event("token.create").target_id == str(token.pk)
        listed = self.client_for(self.bob).get(LIST).json()["results"]
        assert [row["prefix"] for row in listed] == [token.prefix] and "token" not in listed[0]
        assert body["token"] not in str(self.last_event("token.create").detail)
        client = self.client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
        assert client.get("/api/v1/containers/").status_code == 200

    def test_it_lists_only_your_own_tokens(self) -> None:
        accounts.mint_token(self.alice, self.red, "alice's")
        accounts.mint_token(self.bob, self.red, "bob's")
        names = [row["name"] for row in self.client_for(self.bob).get(LIST).json()["results"]]
        assert names == ["bob's"]

    def test_revoking_ends_the_token_and_others_tokens_are_404(self) -> None:
        alices, secret = accounts.mint_token(self.alice, self.red, "alice's")
        assert self.client_for(self.bob).delete(f"{LIST}{alices.pk}/").status_code == 404
        assert self.last_event("token.revoke").outcome == "denied"
        assert self.client_for(self.alice).delete(f"{LIST}{alices.pk}/").status_code == 204
        alices.refresh_from_db()
        assert alices.state() == "revoked"
        client = self.client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        response = client.get("/api/v1/containers/")
        assert response.status_code == 401 and response.json()["code"] == "authentication_failed"

    def test_a_token_cannot_mint_for_another_team(self) -> None:
        response = self.token_client(self.root, self.red).post(LIST, {"team": "blue"}, format="json")
        assert response.status_code == 404
