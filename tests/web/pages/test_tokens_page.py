"""The tokens page: a new token's secret is shown once with a copy button; the list never shows it; revoking."""

from __future__ import annotations

import hashlib
import re

from django.urls import reverse

from containers import accounts
from containers.models import ApiToken, AuditEvent
from tests.web.pages.base import PageTestCase

URL = reverse("containers:tokens")


class TokenPageTests(PageTestCase):
    def test_it_shows_the_secret_once_and_stores_only_its_hash(self) -> None:
        response = self.client_for(self.bob).post(
            URL, {"name": "ci", "team": "red", "expires": "30", "read_only": "on"}
        )
        assert response.status_code == 201 and response["Cache-Control"].startswith("max-age=0")
        page = response.content.decode()
        secret = re.search(r'<code id="token-secret">(we_[0-9a-f]{12}_\w{40})</code>', page).group(1)  # type: ignore[union-attr]
        assert 'data-copy="#token-secret"' in page and "shown only this once" in page
        token = ApiToken.objects.get(user=self.bob)
        assert token.digest == hashlib.sha256(secret.encode()).hexdigest() and token.read_only
        assert token.expires_at is not None and token.team == self.red
        later = self.html(self.bob, URL)
        assert secret not in later and f"we_{token.prefix}_…" in later
        assert AuditEvent.objects.get(action="token.create").username == "bob"

    def test_it_lists_only_the_users_own_tokens(self) -> None:
        accounts.mint_token(self.alice, self.red, name="alices-laptop")
        assert "alices-laptop" not in self.html(self.bob, URL)
        assert "alices-laptop" in self.html(self.alice, URL)

    def test_a_token_belongs_to_one_of_the_users_teams(self) -> None:
        response = self.client_for(self.bob).post(URL, {"name": "x", "team": "blue", "expires": ""})
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        assert not ApiToken.objects.exists()

    def test_it_revokes_the_users_token_and_no_one_elses(self) -> None:
        token, _ = accounts.mint_token(self.bob, self.red, name="old")
        url = reverse("containers:token_revoke", args=[token.pk])
        assert self.client_for(self.alice).post(url).status_code == 404, "even a team admin cannot revoke bob's token"
        response = self.client_for(self.bob).post(url, follow=True)
        assert "Token old revoked" in response.content.decode()
        token.refresh_from_db()
        assert token.state() == "revoked"
        assert self.client_for(self.bob).post(reverse("containers:token_revoke", args=[999])).status_code == 404
