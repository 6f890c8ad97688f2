"""The hand-built server frame is byte for byte what wsproto would write."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from jackrabbit_core.frames import binary_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_binary_frame_matches_wsproto(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = bytes(FrameProtocol(client=False, extensions=[]).send_data(payload, True))
    assert binary_frame(payload) == expected
