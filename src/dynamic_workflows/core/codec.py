"""JSON for everything that is persisted or crosses a process boundary (msgspec)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import SerializationError

__all__ = ["SerializationError", "decode", "encode"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode(value: object) -> bytes:
    """JSON bytes for ``value``; raises SerializationError for unsupported types."""
    try:
        return _encoder.encode(value)
    except (TypeError, msgspec.EncodeError, OverflowError, ValueError) as exc:
        raise SerializationError(str(exc)) from None


def decode(data: bytes | memoryview | str) -> Any:
    """The value of JSON ``data``."""
    return _decoder.decode(data)
