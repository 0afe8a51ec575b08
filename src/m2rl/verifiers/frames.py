"""Length-prefixed pickle frames between the batch pool and its worker processes.

Pickle runs code when it loads, so these frames are for trusted processes only (the pool and the
workers it starts); no channel a sandboxed program can reach uses them: the sandbox speaks
validated JSON frames (`m2rl.verifiers.forkserver`).
"""

from __future__ import annotations

import os
import pickle
import struct

HEADER = struct.Struct(">Q")
MAX_FRAME = 1 << 31


def encode_frame(obj: object) -> bytes:
    """One length-prefixed pickle frame."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def send_frame(fd: int, obj: object) -> None:
    """Write one length-prefixed pickle frame to a file descriptor."""
    write_frame(fd, encode_frame(obj))


def write_frame(fd: int, frame: bytes) -> None:
    """Write an encoded frame in full."""
    data = memoryview(frame)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frames(fd: int, buffer: bytearray) -> list[object] | None:
    """The frames complete after one read of what `fd` holds (the rest stays in `buffer`); None at end of file.

    One read takes every reply a worker has written since the last one, so a caller woken once
    handles many (each wake-up of a sleeping process costs tens of microseconds on a VM).
    """
    chunk = os.read(fd, 1 << 20)
    if not chunk:
        return None
    buffer += chunk
    frames, offset = [], 0
    while len(buffer) - offset >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer, offset)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is too large")
        if len(buffer) - offset - HEADER.size < size:
            break
        start = offset + HEADER.size
        frames.append(pickle.loads(buffer[start : start + size]))
        offset = start + size
    del buffer[:offset]
    return frames


def recv_frame(fd: int) -> object | None:
    """Read one frame; None on end of file (the other side is gone)."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    payload = _read_exact(fd, size)
    if payload is None:
        return None
    return pickle.loads(payload)
