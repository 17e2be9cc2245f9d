"""API token pages: a user's tokens, minting one (its secret shown once, with a copy button) and revoking."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from containers import usecases
from containers.engine.errors import EngineError
from containers.forms import TokenForm
from containers.models import ApiToken
from containers.permissions import NotFoundForUser, visible_teams


@login_required
@never_cache
def tokens(request: HttpRequest) -> HttpResponse:
    """List the user's tokens; a POST mints one and answers with its secret, which no later page shows."""
    principal = usecases.principal_for(request)
    teams = visible_teams(principal).order_by("name")
    form = TokenForm(request.POST or None, teams=teams)
    # Where the docker CLI reaches this node's Docker API with a token (its TCP port on this host).
    host = urlsplit(f"//{request.get_host()}").hostname or "127.0.0.1"
    context: dict[str, Any] = {
        "section": "tokens", "form": form, "has_teams": teams.exists(),
        "docker_host": f"tcp://{host}:{settings.DOCKER_API_PORT}" if settings.DOCKER_API_PORT else "",
    }  # fmt: skip
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            token, secret = usecases.mint_token(
                principal, data["team"], data["name"], read_only=data["read_only"], expires_in=data["expires"]
            )
        except EngineError as err:
            form.add_error(None, str(err))
        else:
            context.update(created=token, secret=secret, form=TokenForm(teams=teams))
            status = 201
    context["tokens"] = usecases.tokens_for(principal).order_by("-created")
    context["now"] = timezone.now()
    return render(request, "containers/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    principal = usecases.principal_for(request)
    token = ApiToken.objects.select_related("team").filter(pk=pk).first()
    if token is None:
        raise NotFoundForUser(f"token {pk}: not found")
    usecases.revoke_token(principal, token)
    messages.success(request, f"Token {token.name or token} revoked: it no longer works anywhere.")
    return redirect("containers:tokens")
