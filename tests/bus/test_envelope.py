"""The wire envelope: what we send decodes back exactly; anything else on a shared channel is classified."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable

import pytest

from aifactory.envelope import (
    VERSION,
    Envelope,
    EnvelopeError,
    EnvelopeSigner,
    decode,
    decode_with_frame,
    encode,
    encode_event,
    encode_probe,
    encode_with_frame,
    own_event_prefix,
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


BAD_WIRES = [
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
    # our own header layout, broken after it: the receiver's fast path must reject these too
    ('{"v":1,"origin":"o","seq":1,"scope":"broadcast","target":null,"event":{"a":}}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"broadcast","target":null,"event":{"a":1}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"broadcast","target":null,"event":{"a":1}}}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"broadcast","target":null,"event":[{}]}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"broadcast","target":"\\q","event":{}}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"user","target":"\\q","event":{}}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"user","target":"","event":{}}', "malformed"),
    ('{"v":1,"origin":"o","seq":01,"scope":"user","target":"u","event":{}}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"user","target":"' + "u" * 257 + '","event":{}}', "malformed"),
    ('{"v":1,"origin":"' + "o" * 257 + '","seq":1,"scope":"user","target":"u","event":{}}', "malformed"),
    ('{"v":1,"origin":"o","seq":1,"scope":"org","target":"o","event":' + "[" * 100_000 + "}", "malformed"),
]


@pytest.mark.parametrize(("wire", "reason"), BAD_WIRES)
@pytest.mark.parametrize("decoder", [decode, decode_with_frame], ids=["decode", "decode_with_frame"])
def test_bad_input_raises_envelope_error_with_reason(
    wire: str | bytes, reason: str, decoder: Callable[[str | bytes], object]
) -> None:
    with pytest.raises(EnvelopeError) as info:
        decoder(wire)
    assert info.value.reason == reason


@pytest.mark.parametrize(("scope", "target"), [("broadcast", None), ("user", "u-1"), ("org", 'o "q" \u00e9')])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_receiver_gets_the_publishers_frame_text_verbatim(
    scope: str, target: str | None, as_bytes: bool
) -> None:
    """The frame is sliced out of the envelope, not re-encoded: even text a re-encode would change
    (1.50, an escaped \u00e9, a nested "event" key) reaches local sockets byte-identical."""
    frame = '{"type":"x","n":1.50,"s":"\\u00e9","event":{"seq":2},"e":1e2}'
    assert encode_event(json.loads(frame)) != frame  # so the check below can tell the two apart
    wire = encode_with_frame(ORIGIN, 9, scope, target, frame)
    env, got = decode_with_frame(wire.encode() if as_bytes else wire)
    assert got == frame
    assert env == decode(wire)


@pytest.mark.parametrize(
    "wire",
    [
        '{"origin":"o","v":1,"seq":3,"scope":"user","target":"u","event":{"a":1.50}}',  # other key order
        '{"v": 1, "origin": "o", "seq": 3, "scope": "user", "target": "u", "event": {"a": 1.50}}',
        '{"v":1,"origin":"o","seq":3,"scope":"user","target":"u","event":{"a":1.50},"extra":true}',
        '{"v":1,"origin":"o","seq":3,"scope":"user","target":"u","event":{"a":0},"event":{"a":1.50}}',
        '{"v":1,"origin":"\\u006f","seq":3,"scope":"user","target":"u","event":{"a":1.50}}',
        '{"v":1,"origin":"o","seq":3,"scope":"user","target":"u","event":{"a":1.50}}\n',
    ],
)
def test_other_valid_layouts_decode_as_before_with_a_re_encoded_frame(wire: str) -> None:
    env, frame = decode_with_frame(wire)
    assert env == decode(wire)
    assert (env.origin, env.seq, env.target, env.event) == ("o", 3, "u", {"a": 1.5})
    assert frame == '{"a":1.5}'


def test_probe_has_no_frame() -> None:
    env, frame = decode_with_frame(encode_probe(ORIGIN, 3, 5))
    assert (env.kind, env.nonce, env.seq, frame) == ("probe", 3, 5, None)


def test_envelope_defaults() -> None:
    env = Envelope(origin=ORIGIN, seq=1, scope="broadcast", target=None, event={"a": 1})
    assert env.v == VERSION and env.kind == "event"


def test_own_event_prefix_matches_every_event_of_that_origin_and_nothing_else() -> None:
    prefix = own_event_prefix(ORIGIN)
    for seq, scope, target in ((1, "broadcast", None), (99, "user", "alice"), (7, "org", "acme")):
        assert encode_with_frame(ORIGIN, seq, scope, target, '{"x":1}').encode().startswith(prefix)
    assert not encode_with_frame(str(uuid.uuid4()), 1, "broadcast", None, "{}").encode().startswith(prefix)
    assert not encode_probe(ORIGIN, 1, 5).encode().startswith(prefix)  # probes are handled, not skipped


# ---- signing ---------------------------------------------------------------------------------------------
SECRET = "x" * 48


def test_signed_envelope_verifies_to_the_exact_envelope_text() -> None:
    signer = EnvelopeSigner(SECRET)
    wire = encode_with_frame(ORIGIN, 7, "user", "u-1", encode_event({"a": 1}))
    signed = signer.sign(wire)
    assert signed.startswith("s1.") and signed.endswith(wire)
    assert signer.verify(signed.encode()) == wire.encode()
    env, frame = decode_with_frame(signer.verify(signed.encode()))
    assert (env.origin, env.seq, frame) == (ORIGIN, 7, '{"a":1}')


def test_signature_covers_the_whole_envelope_so_fields_can_be_added() -> None:
    signer = EnvelopeSigner(SECRET)
    wire = '{"v":1,"origin":"o","seq":3,"scope":"user","target":"u","_offset":"9-0","event":{"a":1}}'
    assert signer.verify(signer.sign(wire)) == wire.encode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s[len("s1.") + 64 + 1 :], "unsigned"),  # the bare envelope
        (lambda s: "s2" + s[2:], "unsigned"),  # an unknown scheme
        (lambda s: s[:10] + ("0" if s[10] != "0" else "1") + s[11:], "bad_signature"),
        (lambda s: s.replace('"seq":7', '"seq":1000000000000000000'), "bad_signature"),
        (lambda s: s.replace('"u-1"', '"u-2"'), "bad_signature"),
        (lambda s: EnvelopeSigner("y" * 48).sign(s[len("s1.") + 64 + 1 :]), "bad_signature"),
        (lambda s: s[: len("s1.") + 64] + ":" + s[len("s1.") + 65 :], "unsigned"),
        (lambda s: "s1." + "g" * 64 + s[len("s1.") + 64 :], "bad_signature"),
        (lambda s: "", "unsigned"),
    ],
    ids=[
        "bare",
        "scheme",
        "flipped-mac",
        "seq-changed",
        "target-changed",
        "other-secret",
        "separator",
        "non-hex",
        "empty",
    ],
)
def test_unsigned_or_tampered_envelopes_are_refused(mutate: Callable[[str], str], reason: str) -> None:
    signer = EnvelopeSigner(SECRET)
    signed = signer.sign(encode_with_frame(ORIGIN, 7, "user", "u-1", encode_event({"a": 1})))
    with pytest.raises(EnvelopeError) as info:
        signer.verify(mutate(signed).encode())
    assert info.value.reason == reason


def test_mac_is_standard_hmac_sha256_with_a_derived_key_never_the_secret() -> None:
    signer = EnvelopeSigner(SECRET)
    key = hmac.digest(SECRET.encode(), b"aifactory envelope signing key v1", "sha256")
    for body in (b"", b"x", b"y" * 5000):
        assert signer.mac(body) == hmac.digest(key, body, "sha256").hex().encode()
        assert signer.mac(body) != hmac.digest(SECRET.encode(), body, "sha256").hex().encode()
    assert SECRET not in repr(signer)
    with pytest.raises(ValueError):
        EnvelopeSigner("")


@pytest.mark.parametrize("seq", [2**63, 10**30])
def test_a_sequence_number_beyond_int64_is_malformed(seq: int) -> None:
    wire = f'{{"v":1,"origin":"o","seq":{seq},"scope":"broadcast","target":null,"event":{{}}}}'
    for decoder in (decode, decode_with_frame):
        with pytest.raises(EnvelopeError) as info:
            decoder(wire)
        assert info.value.reason == "malformed"
    with pytest.raises(EnvelopeError):
        decode(f'{{"v":1,"origin":"o","kind":"probe","nonce":1,"seq":{seq}}}')


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_events_are_strict_json(value: float) -> None:
    with pytest.raises(ValueError):
        encode_event({"x": value})
