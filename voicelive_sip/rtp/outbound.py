"""The outbound audio buffer of one call: bounded in seconds, pulled one frame per media tick, O(1) clear."""

from __future__ import annotations

from collections import deque

__all__ = ["OutboundBuffer"]


class OutboundBuffer:
    """FIFO of the leg's audio bytes (G.711, or PCM16 for G.722) that the media clock drains frame by frame.

    `enqueue` accepts any chunk size; `pull` returns exactly `frame_bytes`, padding a short tail with the
    codec's silence. Audio beyond `max_seconds` is refused (counted), never buffered without bound.
    """

    def __init__(
        self, *, frame_bytes: int = 160, bytes_per_second: int = 8000, max_seconds: float = 30.0, fill: int
    ) -> None:
        self.frame_bytes = frame_bytes
        self.bytes_per_second = bytes_per_second
        self.max_bytes = int(max_seconds * bytes_per_second)
        self.fill = fill
        self.dropped_bytes = 0
        self.played_frames = 0
        self.played_bytes = 0  # audio pulled, without the silence that pads a short tail
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of _chunks[0] already pulled
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def buffered_seconds(self) -> float:
        """Audio waiting to be played, in seconds."""
        return self._size / self.bytes_per_second

    def enqueue(self, data: bytes) -> int:
        """Append audio; returns the bytes accepted (less than `len(data)` when the buffer is full)."""
        room = self.max_bytes - self._size
        if len(data) > room:
            self.dropped_bytes += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)
        return len(data)

    def clear(self) -> int:
        """Drop everything queued in O(1) (barge-in); returns the bytes dropped."""
        dropped = self._size
        self._chunks = deque()
        self._offset = 0
        self._size = 0
        return dropped

    def pull(self) -> bytes | None:
        """The next frame, or None if nothing is queued; a short tail is padded with silence."""
        if not self._size:
            return None
        need = self.frame_bytes
        head = self._chunks[0]
        start = self._offset
        if len(head) - start > need:
            self._offset = start + need
            self._size -= need
            self.played_frames += 1
            self.played_bytes += need
            return head[start : start + need]
        parts: list[bytes] = []
        while need and self._chunks:
            head = self._chunks[0]
            piece = head[self._offset : self._offset + need]
            parts.append(piece)
            need -= len(piece)
            if self._offset + len(piece) >= len(head):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset += len(piece)
        self._size -= self.frame_bytes - need
        self.played_bytes += self.frame_bytes - need
        if need:
            parts.append(bytes([self.fill]) * need)
        self.played_frames += 1
        return b"".join(parts)
