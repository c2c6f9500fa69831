"""Writes a capture file from the spec in proto/capture.md alone (an
independent writer, to keep the document honest): N connections, each an
open record, one Message-mode request asking for an ack, and a close
record; then, with --torn, half of one more record.

usage: python write_capture.py OUT N [--torn]
"""
import struct
import sys
import time
import zlib

out_path, n = sys.argv[1], int(sys.argv[2])
torn = "--torn" in sys.argv[3:]
started_us = int(time.time() * 1e6)

header = b"weircap\0" + struct.pack("<HHQ", 1, 0, started_us)
header += struct.pack("<I", zlib.crc32(header))


def record(kind, conn, offset_us, payload):
    rest = struct.pack("<BQQ", kind, conn, offset_us) + payload
    return struct.pack("<II", len(payload), zlib.crc32(rest)) + rest


def mp_str(s):
    b = s.encode()
    assert len(b) < 32
    return bytes([0xA0 | len(b)]) + b


now = int(time.time())
parts = [header]
for c in range(1, n + 1):
    request = (
        bytes([0x94])
        + mp_str("spec.written")
        + bytes([0xD7, 0x00]) + struct.pack(">II", now, c)
        + bytes([0x81]) + mp_str("i") + bytes([0xCD]) + struct.pack(">H", c)
        + bytes([0x81]) + mp_str("chunk") + mp_str("c%08d" % c)
    )
    parts.append(record(2, c, c * 100, b"127.0.0.1:4000"))
    parts.append(record(1, c, c * 100 + 10, request))
    parts.append(record(3, c, c * 100 + 20, b""))
if torn:
    extra = record(1, n + 1, (n + 1) * 100, b"\x94" + b"x" * 40)
    parts.append(extra[: len(extra) // 2])
open(out_path, "wb").write(b"".join(parts))
