"""The dashboard's session value (gateway/admin/session.py): signed with the admin token over
its expiry, so it proves a sign-in without being the token. Hand-built times, no sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.admin.session import SESSION_S, issue, valid

TOKEN = "s3cret-token-0123456789"
NOW = 1_700_000_000.0


def test_a_session_is_valid_until_it_expires() -> None:
    value = issue(TOKEN, NOW)
    assert TOKEN not in value and value.startswith("v1.")
    assert valid(TOKEN, value, NOW)
    assert valid(TOKEN, value, NOW + SESSION_S - 1)
    assert not valid(TOKEN, value, NOW + SESSION_S)
    assert SESSION_S == 12 * 3600


def test_another_token_ends_every_session() -> None:
    assert not valid("the-new-token", issue(TOKEN, NOW), NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),  # another MAC
        lambda v: "v1." + str(int(v.split(".")[1]) + 3600) + "." + v.split(".")[2],  # longer
        lambda v: "v2" + v[2:],
        lambda v: v.split(".", 2)[0] + "." + v.split(".", 2)[1],  # no MAC
        lambda v: "v1.\uff11\uff12\uff13." + v.split(".")[2],  # digits, but not ASCII ones
        lambda v: "v1." + "9" * 13 + "." + v.split(".")[2],
        lambda v: "",
        lambda v: TOKEN,
    ],
)
def test_a_tampered_or_malformed_value_is_refused(tamper: Callable[[str], str]) -> None:
    assert not valid(TOKEN, tamper(issue(TOKEN, NOW)), NOW)
