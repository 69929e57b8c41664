"""The wire envelope: what we send decodes back exactly; anything else on a shared channel is classified."""

from __future__ import annotations

import json
import uuid

import pytest

from aifactory.envelope import (
    VERSION,
    Envelope,
    EnvelopeError,
    decode,
    encode,
    encode_event,
    encode_probe,
    encode_with_frame,
)

ORIGIN = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("scope", "target"), [("broadcast", None), ("user", "u-1"), ("org", 'org "quoted" \u00e9')]
)
def test_roundtrip_reuses_the_encoded_frame(scope: str, target: str | None) -> None:
    event = {"type": "task.progress", "pct": 42, "text": "h\u00e9llo \u2603", "nested": {"a": [1, None]}}
    frame = encode_event(event)
    wire = encode_with_frame(ORIGIN, 7, scope, target, frame)
    assert frame in wire  # the event is spliced in, not re-encoded
    assert json.loads(wire) == {
        "v": VERSION,
        "origin": ORIGIN,
        "seq": 7,
        "scope": scope,
        "target": target,
        "event": event,
    }
    env = decode(wire)
    assert (env.origin, env.seq, env.scope, env.target, env.event, env.kind) == (
        ORIGIN,
        7,
        scope,
        target,
        event,
        "event",
    )
    assert decode(wire.encode()) == env  # bytes from Redis decode the same
    assert decode(encode(env)) == env


def test_frames_are_ascii_so_length_is_wire_bytes() -> None:
    frame = encode_event({"t": "\u00e9\u2603\U0001f600"})
    assert len(frame) == len(frame.encode())


def test_probe_roundtrip() -> None:
    env = decode(encode_probe(ORIGIN, 12))
    assert (env.kind, env.origin, env.nonce) == ("probe", ORIGIN, 12)


def test_event_must_be_a_json_object() -> None:
    with pytest.raises(TypeError, match="event must be a dict"):
        encode_event(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_event({"x": object()})


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\xff\xfe\x00garbage", "malformed"),
        ("not json at all", "malformed"),
        ("[" * 100_000 + "]" * 100_000, "malformed"),
        ('{"v":1,"origin":"o","seq":"1","scope":"user","target":"u","event":{}}', "malformed"),
        ('{"v":1,"origin":"o","seq":true,"scope":"user","target":"u","event":{}}', "malformed"),
        ('{"v":1,"origin":"o","seq":-1,"scope":"user","target":"u","event":{}}', "malformed"),
        ('{"v":1,"origin":"o","seq":1,"scope":"planet","target":"u","event":{}}', "malformed"),
        ('{"v":1,"origin":"o","seq":1,"scope":"user","target":null,"event":{}}', "malformed"),
        ('{"v":1,"origin":"o","seq":1,"scope":"broadcast","target":"x","event":{}}', "malformed"),
        ('{"v":1,"origin":"o","seq":1,"scope":"org","target":"o","event":[1]}', "malformed"),
        ('{"v":1,"origin":"","seq":1,"scope":"broadcast","target":null,"event":{}}', "malformed"),
        ('{"v":"1","origin":"o","seq":1,"scope":"broadcast","target":null,"event":{}}', "malformed"),
        ('{"v":1,"origin":"o","kind":"probe","nonce":"x"}', "malformed"),
        ("[1,2,3]", "foreign"),
        ('"just a string"', "foreign"),
        ('{"type":"message","data":"from some other app"}', "foreign"),
        ('{"v":1,"origin":"o","kind":"telemetry"}', "foreign"),
        ('{"v":2,"origin":"o","seq":1,"scope":"broadcast","target":null,"event":{}}', "version"),
        ('{"v":99,"origin":"o","whatever":"new shape"}', "version"),
    ],
)
def test_bad_input_raises_envelope_error_with_reason(wire: str | bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode(wire)
    assert info.value.reason == reason


def test_envelope_defaults() -> None:
    env = Envelope(origin=ORIGIN, seq=1, scope="broadcast", target=None, event={"a": 1})
    assert env.v == VERSION and env.kind == "event"
