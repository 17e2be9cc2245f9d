"""The account pages Django does not audit by itself: changing one's password."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from containers import accounts, usecases


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, recorded in the audit log; the session stays logged in."""

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        accounts.audit(usecases.principal_for(self.request), "user.password_change", self.request.user)
        return response
