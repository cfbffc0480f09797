"""What a program that hosts code written against this SDK uses (the host's HTTP server and its
calls into dispatcher code), beyond the SDK's own surface. Not part of Cloudflare's SDK: tenant
code has no use for it.
"""

from __future__ import annotations

from ._fetch import use_http_client
from ._http import incoming_request, make_request

__all__ = ["incoming_request", "make_request", "use_http_client"]
