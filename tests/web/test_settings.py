"""Settings come from the environment and fail fast, naming the variable, on a bad value."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from webengine.settings import envbool, envint, envlist, envsecret

REPO = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str], root: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG")}
    base |= {"WEBENGINE_ROOT": str(root), "DJANGO_SETTINGS_MODULE": "webengine.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=base | env, capture_output=True, text=True, timeout=60
    )


def test_envbool_reads_the_usual_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("1", True), ("yes", True), ("On", True), ("0", False), ("false", False)]:
        monkeypatch.setenv("X_FLAG", value)
        assert envbool("X_FLAG", not expected) is expected
    monkeypatch.delenv("X_FLAG")
    assert envbool("X_FLAG", True) is True


def test_envbool_rejects_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe'"):
        envbool("X_FLAG", False)


def test_envint_checks_type_and_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_N", "12")
    assert envint("X_N", 0, maximum=20) == 12
    monkeypatch.setenv("X_N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="expected an integer"):
        envint("X_N", 0)
    monkeypatch.setenv("X_N", "99")
    with pytest.raises(ImproperlyConfigured, match="from 0 to 20"):
        envint("X_N", 0, maximum=20)


def test_envlist_and_envsecret_file_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("X_HOSTS", " a.example, ,b ")
    assert envlist("X_HOSTS", []) == ["a.example", "b"]
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    monkeypatch.setenv("X_KEY", "from-env")
    monkeypatch.setenv("X_KEY_FILE", str(secret))
    assert envsecret("X_KEY") == "from-file"
    monkeypatch.setenv("X_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_KEY_FILE"):
        envsecret("X_KEY")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe'"),
        ({"REDIS_URL": "http://127.0.0.1:1"}, "REDIS_URL="),
        ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
        ({"WEBENGINE_ROOT": "relative/path"}, "WEBENGINE_ROOT='relative/path'"),
    ],
)
def test_a_bad_value_stops_the_process_with_its_name(env: dict[str, str], message: str, state_root: Path) -> None:
    result = _check(env, state_root)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr, result.stderr[-600:]


def test_secret_key_is_generated_once_and_kept_private(state_root: Path) -> None:
    root = state_root / "fresh"
    assert _check({}, root).returncode == 0
    key_file = root / "secret_key"
    first = key_file.read_text()
    assert len(first.strip()) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, "the generated secret key must be readable by root only"
    assert _check({}, root).returncode == 0
    assert key_file.read_text() == first, "a second start must reuse the key, or every session is logged out"


def test_database_defaults_to_sqlite_in_the_state_root(state_root: Path) -> None:
    code = "from django.conf import settings as s; d = s.DATABASES['default']; print(d['ENGINE'], d['NAME'], s.DEBUG)"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DEBUG")}
    env |= {"WEBENGINE_ROOT": str(state_root), "DJANGO_SETTINGS_MODULE": "webengine.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.split() == ["django.db.backends.sqlite3", str(state_root / "webengine.sqlite3"), "False"]
