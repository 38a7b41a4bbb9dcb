"""TerminalScrollback keeps exact absolute offsets across wrap-around."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tundra.sessions.scrollback import TerminalScrollback


@settings(database=None, deadline=None)
@given(
    cap=st.integers(1, 64),
    writes=st.lists(st.binary(max_size=150), max_size=25),
    since=st.integers(0, 2000),
)
def test_reads_match_a_reference_tail(cap: int, writes: list[bytes], since: int) -> None:
    sb = TerminalScrollback(cap)
    ref = b""
    for w in writes:
        assert sb.write(w) == len(ref)
        ref += w
    lo = max(0, len(ref) - cap)
    assert (sb.start, sb.end, len(sb)) == (lo, len(ref), len(ref) - lo)
    start, data, lost = sb.read(since)
    expect_start = min(max(since, lo), len(ref))
    assert start == expect_start
    assert data == ref[expect_start:]
    assert lost == max(0, lo - since)


def test_read_respects_max_bytes_and_none_means_oldest() -> None:
    sb = TerminalScrollback(8)
    sb.write(b"0123456789abc")
    assert sb.read() == (5, b"56789abc", 0)
    assert sb.read(6, 3) == (6, b"678", 0)
    assert sb.read(0, 2) == (5, b"56", 5)


def test_storage_grows_lazily() -> None:
    sb = TerminalScrollback(1 << 20)
    sb.write(b"x" * 100)
    assert len(sb._buf) == 100
