"""The admin token: which tokens are usable, and checking one on a request.

A token travels in ``Authorization: Bearer <token>``. HTTP header values are bytes that servers
and clients decode differently (latin-1, UTF-8, or not at all), so a token outside printable
ASCII would match or not depending on who encodes it, and httpx refuses to send it at all; a
token with spaces or of whitespace only would be cut at the first space or stripped to nothing
on the way. Both sides therefore accept only :func:`token_problem`-free tokens: printable ASCII
(``!`` to ``~``), at least one character. The check on a request compares bytes in constant time
and never decodes the header, so no header value can make it fail.
"""

from __future__ import annotations

import hmac

__all__ = ["TOKEN_RULE", "bearer_matches", "token_problem"]

TOKEN_RULE = "printable ASCII without spaces (characters ! to ~)"


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be an admin token (a phrase to follow its name), or None if it can."""
    if not token.strip():
        return "is empty" if not token else "is only whitespace"
    for position, char in enumerate(token, 1):
        if not "!" <= char <= "~":
            what = "a space" if char.isspace() else repr(char)
            return f"must be {TOKEN_RULE}: character {position} is {what}"
    return None


def bearer_matches(header: bytes, token: str) -> bool:
    """Whether the ``Authorization`` header value ``header`` is ``Bearer <token>`` (the scheme in
    any case, surrounding spaces ignored), compared in constant time over bytes."""
    scheme, _, given = header.strip(b" \t").partition(b" ")
    expected = token.encode("ascii", "replace")
    # Both sides are compared even when the scheme is wrong: no early exit to time.
    matches = hmac.compare_digest(given.strip(b" \t"), expected)
    return scheme.lower() == b"bearer" and matches
