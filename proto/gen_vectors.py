#!/usr/bin/env python3
"""Writes the forward-protocol test vectors in proto/vectors/.

Each vector is NAME.bin (the bytes a client sends) and NAME.json (what weir
must decode from them). Byte layouts follow ../shared/forward-protocol.md
(sections 2, 3, 4 and 10); where a client's quirk matters (str32 entries
from Fluentd, array32 headers from Fluent Bit, v1.5 metadata entries) the
bytes are written by hand rather than by a minimal encoder.

Run: python3 proto/gen_vectors.py   (needs the `msgpack` package)
"""
import gzip
import json
import os
import struct

import msgpack

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")
T = 1441588984  # 0x55ECE6F8


def et(sec, nsec=0):
    """EventTime as fixext8 (d7 00)."""
    return b"\xd7\x00" + struct.pack(">II", sec, nsec)


def et_ext8(sec, nsec=0):
    return b"\xc7\x08\x00" + struct.pack(">II", sec, nsec)


def p(obj):
    return msgpack.packb(obj, use_bin_type=True)


def str32(b):
    return b"\xdb" + struct.pack(">I", len(b)) + b


def bin8(b):
    return b"\xc4" + bytes([len(b)]) + b


def arr32(n):
    return b"\xdd" + struct.pack(">I", n)


def gz(data, mtime=0):
    return gzip.compress(data, mtime=mtime)


def ns(sec, nsec=0):
    return sec * 1_000_000_000 + nsec


STREAM = b"".join([p([T, {"m": "foo"}]), p([T + 1, {"m": "bar"}])])
EV2 = [
    {"time_ns": ns(T), "record": {"m": "foo"}},
    {"time_ns": ns(T + 1), "record": {"m": "bar"}},
]
CHUNK = "p8n9gmxTQVC8/nh2wlKKeQ=="

VECTORS = {
    # section 10: Message with integer seconds
    "message_int_time": (
        b"\x93" + p("tag.name") + b"\xce\x55\xec\xe6\xf8" + p({"message": "bar"}),
        dict(mode="message", tag="tag.name",
             events=[{"time_ns": ns(T), "record": {"message": "bar"}}]),
    ),
    # section 10: Message with EventTime and an ack request
    "message_eventtime_ack": (
        b"\x94" + p("tag.name") + et(T) + p({"message": "bar"}) + p({"chunk": CHUNK}),
        dict(mode="message", tag="tag.name", ack=CHUNK,
             events=[{"time_ns": ns(T), "record": {"message": "bar"}}]),
    ),
    # fluent-logger-golang: signed int32 time
    "message_int32_time": (
        b"\x93" + p("docker.web") + b"\xd2\x55\xec\xe6\xf8" + p({"log": "x"}),
        dict(mode="message", tag="docker.web",
             events=[{"time_ns": ns(T), "record": {"log": "x"}}]),
    ),
    # Message with a float time (Fluent Bit's decoder accepts it)
    "message_float_time": (
        b"\x93" + p("t") + b"\xcb\x41\xd5\x7b\x39\xbe\x20\x00\x00" + p({"a": 1}),
        dict(mode="message", tag="t",
             events=[{"time_ns": ns(T, 500_000_000), "record": {"a": 1}}]),
    ),
    # Message with a msgpack Timestamp ext -1 (64-bit form, nsec=7)
    "message_msgpack_timestamp": (
        b"\x93" + p("t") + b"\xd7\xff" + struct.pack(">Q", (7 << 34) | T) + p({"a": 1}),
        dict(mode="message", tag="t",
             events=[{"time_ns": ns(T, 7), "record": {"a": 1}}]),
    ),
    # section 10: Forward, Fluent Bit default shape minus metadata
    "forward": (
        b"\x92" + p("tag.name") + b"\x92" + p([T, {"m": "foo"}]) + p([T + 1, {"m": "bar"}]),
        dict(mode="forward", tag="tag.name", events=EV2),
    ),
    # Forward with EventTime ext8 and Fluent Bit's array32 headers
    "forward_ext8_array32": (
        arr32(3) + p("fb.app") + arr32(1) + arr32(2) + et_ext8(T, 123) + p({"k": "v"})
        + p({"size": 1, "fluent_signal": 0}),
        dict(mode="forward", tag="fb.app",
             events=[{"time_ns": ns(T, 123), "record": {"k": "v"}}]),
    ),
    # section 10: Fluent Bit >= 5.0.5 default entry [[EventTime, {}], record]
    "forward_v15_metadata": (
        b"\x92" + p("app") + b"\x91\x92\x92" + et(T) + b"\x80" + p({"m": "foo"}),
        dict(mode="forward", tag="app",
             events=[{"time_ns": ns(T), "record": {"m": "foo"}}]),
    ),
    # section 10: PackedForward, bin8 entries, {"size": 2}
    "packed_bin8": (
        b"\x93" + p("tag.name") + bin8(STREAM) + p({"size": 2}),
        dict(mode="packed_forward", tag="tag.name", events=EV2),
    ),
    # section 10: PackedForward as Fluentd out_forward sends it (str32 + "text")
    "packed_str32_fluentd": (
        b"\x93" + p("tag.name") + str32(STREAM) + b"\x83" + p("size") + p(2)
        + p("compressed") + p("text") + p("chunk") + p(CHUNK + "\n"),
        dict(mode="packed_forward", tag="tag.name", events=EV2, ack=CHUNK + "\n"),
    ),
    # section 10: CompressedPackedForward, one gzip member
    "compressed_gzip": (
        b"\x93" + p("tag.name") + p(gz(STREAM)) + p({"size": 2, "compressed": "gzip"}),
        dict(mode="compressed_packed_forward", tag="tag.name", events=EV2),
    ),
    # gzip with two members back to back (allowed by the spec)
    "compressed_gzip_two_members": (
        b"\x93" + p("tag.name") + p(gz(STREAM[:13]) + gz(STREAM[13:]))
        + p({"compressed": "gzip", "chunk": "abc"}),
        dict(mode="compressed_packed_forward", tag="tag.name", events=EV2, ack="abc"),
    ),
    # zstd (Fluentd >= 1.19)
    # zstd (Fluentd >= 1.19); built in main() with the zstandard module
    "compressed_zstd": (None, None),
    # fluent_signal 1 (metrics): skipped, still acked
    "signal_metrics_skipped": (
        b"\x93" + p("fb.metrics") + bin8(STREAM) + p({"fluent_signal": 1, "chunk": "m1"}),
        dict(mode="packed_forward", tag="fb.metrics", events=[], ack="m1",
             skipped={"non_log_signal": 2}),
    ),
    # bad single events are skipped, the rest kept
    "forward_invalid_events": (
        b"\x92" + p("t") + b"\x95" + p([T, {"ok": 1}]) + p([T, "not a map"])
        + p(["not a time", {}]) + p(5) + p([T, {"ok": 2}, "extra"]),
        dict(mode="forward", tag="t",
             events=[{"time_ns": ns(T), "record": {"ok": 1}}],
             skipped={"invalid_record": 1, "invalid_time": 1, "invalid_entry": 2}),
    ),
    # tag that is not a string: every event skipped, ack still sent
    "message_int_tag": (
        b"\x94" + p(42) + p(T) + p({"a": 1}) + p({"chunk": "c"}),
        dict(mode="message", tag=None, events=[], ack="c", skipped={"invalid_tag": 1}),
    ),
    # non-UTF-8 bytes in a str value (Fluentd packs binary as str)
    "message_non_utf8_value": (
        b"\x93" + p("t") + p(T) + b"\x81\xa1v\xa3a\xffb",
        dict(mode="message", tag="t",
             events=[{"time_ns": ns(T), "record_json": "{\"v\":\"a\\udcffb\"}"}]),
    ),
    # a TCP keep-alive no-op
    "nil_heartbeat": (b"\xc0", dict(mode=None, events=[])),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    try:
        import zstandard  # noqa: F401
        zstd_frame = zstandard.ZstdCompressor().compress(STREAM)
    except ImportError:
        zstd_frame = None
    for name, (data, expected) in VECTORS.items():
        if name == "compressed_zstd":
            if zstd_frame is None:
                continue
            data = b"\x93" + p("tag.name") + p(zstd_frame) + p({"compressed": "zstd"})
            expected = dict(mode="compressed_packed_forward", tag="tag.name", events=EV2)
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(expected, f, indent=1, sort_keys=True)
            f.write("\n")
    print("wrote", len(os.listdir(OUT)) // 2, "vectors to", OUT)


if __name__ == "__main__":
    main()
