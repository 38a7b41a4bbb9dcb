"""Frame codec: round trips under any chunking, and the size cap before buffering."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tundra.errors import TundraError
from tundra.ipc.errors import FrameTooLarge
from tundra.ipc.framing import FrameDecoder, frame
from tundra.ipc.protocol import MAX_FRAME, ClientFrame, Request
from tundra.ipc.server import IpcServer


@given(st.lists(st.binary(max_size=3000), max_size=20), st.lists(st.integers(1, 5000), min_size=1, max_size=50))
@settings(max_examples=200, deadline=None)
def test_round_trip_under_any_chunking(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(b) for b in bodies)
    dec = FrameDecoder()
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        dec.feed(stream[pos : pos + n])
        out.extend(dec.frames())
        pos += n
        i += 1
    assert out == bodies
    assert not dec.in_frame


def test_oversized_length_rejected_before_body() -> None:
    dec = FrameDecoder()
    dec.feed(struct.pack(">I", 2**31))
    with pytest.raises(FrameTooLarge):
        list(dec.frames())
    with pytest.raises(FrameTooLarge):
        frame(b"x" * (MAX_FRAME + 1))


def test_exactly_max_frame_is_accepted() -> None:
    dec = FrameDecoder(max_frame=10)
    dec.feed(frame(b"0123456789"))
    assert list(dec.frames()) == [b"0123456789"]


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_decoder_fuzz_raises_only_typed_errors(body: bytes) -> None:
    try:
        IpcServer._decode(body)
    except TundraError as err:
        assert err.code in {"ipc.invalid_request", "ipc.unknown_message"}


@given(st.integers(0, 2**31), st.text(max_size=30), st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)))
def test_request_round_trip(rid: int, method: str, params: dict[str, int]) -> None:
    enc = msgspec.msgpack.Encoder()
    req = Request(id=rid, method=method, params=msgspec.Raw(enc.encode(params)))
    back = msgspec.msgpack.decode(enc.encode(req), type=ClientFrame)
    assert isinstance(back, Request) and back.id == rid and back.method == method
    assert msgspec.msgpack.decode(back.params) == params
