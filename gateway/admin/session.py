"""The dashboard's sign-in session: a cookie value that proves its holder once gave the admin
token, without being the token.

    v1.<expiry, Unix seconds>.<hex HMAC-SHA256, keyed by server.admin_token, of the expiry>

Stateless, so every worker and replica accepts a session any of them issued. It expires
after `SESSION_S`; changing the admin token ends every session at once (the key changed).
Signing out clears the browser's cookie; a copy of the value stays valid until it expires
unless the token is rotated. Decisions only: the clock is the caller's.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "turnout_admin"
SESSION_S = 12 * 3600
_VERSION = "v1"
_CONTEXT = b"turnout admin session\x00"  # this MAC signs nothing else keyed by the token


def _mac(token: str, expiry: int) -> str:
    message = _CONTEXT + str(expiry).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def issue(token: str, now_s: float) -> str:
    """A session value for `token`, valid for SESSION_S from `now_s`."""
    expiry = int(now_s) + SESSION_S
    return f"{_VERSION}.{expiry}.{_mac(token, expiry)}"


def valid(token: str, value: str, now_s: float) -> bool:
    """Was `value` issued for `token`, and has it not expired? Compared in constant time."""
    version, _, rest = value.partition(".")
    raw_expiry, _, mac = rest.partition(".")
    digits = raw_expiry.isascii() and raw_expiry.isdigit() and len(raw_expiry) <= 12
    if version != _VERSION or not digits:
        return False
    expiry = int(raw_expiry)
    if expiry <= now_s:
        return False
    return hmac.compare_digest(mac.encode(), _mac(token, expiry).encode())
