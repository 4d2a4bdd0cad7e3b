"""Regenerate the G.711 reference tables here from CPython's `audioop` (needs Python 3.12 or older).

Files (raw, no header):
  ulaw_encode.bin / alaw_encode.bin  65,536 codes, one byte each, for int16 inputs -32768 … 32767 in order
  ulaw_decode.bin / alaw_decode.bin  256 little-endian int16 samples, for codes 0x00 … 0xFF in order
"""

from __future__ import annotations

import audioop  # deprecated in 3.11, removed in 3.13: that is why the output is stored
import hashlib
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    linear = struct.pack("<65536h", *range(-32768, 32768))
    codes = bytes(range(256))
    tables = {
        "ulaw_encode.bin": audioop.lin2ulaw(linear, 2),
        "alaw_encode.bin": audioop.lin2alaw(linear, 2),
        "ulaw_decode.bin": audioop.ulaw2lin(codes, 2),
        "alaw_decode.bin": audioop.alaw2lin(codes, 2),
    }
    for name, data in tables.items():
        (HERE / name).write_bytes(data)
        print(name, len(data), hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    main()
