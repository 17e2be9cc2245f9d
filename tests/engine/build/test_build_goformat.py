"""Go's formatting of moby's commit messages: the image history reads as Docker writes it."""

from __future__ import annotations

import pytest

from containers.engine.build.goformat import go_duration, go_health, go_quote, go_quote_list
from containers.engine.images.config import Healthcheck


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (1, "1ns"), (1500, "1.5µs"), (500_000_000, "500ms"), (1_500_000_000, "1.5s"),
     (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (-2 * 10**9, "-2s")],
)  # fmt: skip
def test_it_formats_durations_as_go_does(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_it_quotes_strings_and_slices_as_go_does() -> None:
    assert go_quote('say "hi"\n\tand \\ \x01 é') == '"say \\"hi\\"\\n\\tand \\\\ \\x01 é"'
    assert go_quote_list(["sh", "-c", "echo hi"]) == '["sh" "-c" "echo hi"]'
    assert go_quote_list([]) == "[]"


def test_it_formats_a_healthcheck_as_moby_writes_it_into_the_history() -> None:
    health = Healthcheck(test=("CMD", "true"), interval=30 * 10**9, retries=3)
    assert go_health(health) == '&{["CMD" "true"] "30s" "0s" "0s" "0s" \'\\x03\'}'
    assert go_health(Healthcheck(test=("NONE",), retries=65)).endswith(" 'A'}")
