"""Changing one's password: the old one is checked, the new one validated, and the change is audited."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.urls import reverse

from containers.models import AuditEvent
from tests.web.pages.base import PageTestCase

URL = reverse("password_change")


class PasswordChangeTests(PageTestCase):
    def test_it_changes_the_password_and_records_it(self) -> None:
        self.bob.set_password("old horse battery staple")
        self.bob.save()
        client = self.client_for(self.bob)
        response = client.post(URL, {"old_password": "old horse battery staple",
                                     "new_password1": "new horse battery staple",
                                     "new_password2": "new horse battery staple"}, follow=True)  # fmt: skip
        assert response.redirect_chain[-1][0] == reverse("password_change_done")
        assert "Password changed" in response.content.decode()
        assert get_user_model().objects.get(username="bob").check_password("new horse battery staple")
        assert AuditEvent.objects.get(action="user.password_change").username == "bob"
        assert client.get(reverse("containers:overview")).status_code == 200, "the session stays logged in"

    def test_it_shows_the_errors_next_to_the_fields(self) -> None:
        self.bob.set_password("old horse battery staple")
        self.bob.save()
        response = self.client_for(self.bob).post(
            URL, {"old_password": "wrong", "new_password1": "short", "new_password2": "other"}
        )
        page = response.content.decode()
        assert response.status_code == 200 and "Your old password was entered incorrectly" in page
        assert not AuditEvent.objects.filter(action="user.password_change").exists()

    def test_the_login_page_logs_in(self) -> None:
        self.bob.set_password("old horse battery staple")
        self.bob.save()
        response = self.client.post(reverse("login"), {"username": "bob", "password": "old horse battery staple"})
        assert response.status_code == 302 and response["Location"] == "/"
        page = self.client.post(reverse("login"), {"username": "bob", "password": "nope"}).content.decode()
        assert "didn't match" in page
