"""Ogg Opus decoded streaming (avatarkit_fast.audio.opus): made-up speech,
encoded here with PyAV, decoded in chunks of any size."""

from __future__ import annotations

import fractions
import io
import struct

import numpy as np
import pytest

av = pytest.importorskip("av")

from avatarkit_fast.audio import OggOpusDecoder, StreamResampler  # noqa: E402
from avatarkit_fast.audio.ogg import OggPacketReader, ogg_crc  # noqa: E402
from avatarkit_fast.audio.opus import opus_packet_samples  # noqa: E402
from avatarkit_fast.errors import DecodeError  # noqa: E402


def speech(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like int16: a gliding pitch with harmonics under a syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t) + 10 * rng.standard_normal() * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12) if k * 170 < rate / 2)
    syll = np.clip(np.sin(2 * np.pi * 3.5 * t + 1.0), 0, None) ** 1.5  # 3.5 syllables/s with pauses
    envelope = syll * (0.6 + 0.4 * np.sin(2 * np.pi * 0.4 * t) ** 2)
    x = voice * envelope
    return np.rint(x / np.max(np.abs(x)) * 0.6 * 32767).astype(np.int16)


def encode(x: np.ndarray, rate: int, *, channels: int = 1, bitrate: int = 24000, frame: int = 960) -> bytes:
    """Ogg Opus of int16 ``x`` ((n,) or (n, channels)) with PyAV."""
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as c:
        s = c.add_stream("libopus", rate=rate, layout=layout)
        s.bit_rate = bitrate
        tb = fractions.Fraction(1, rate)
        for i in range(0, len(x), frame):
            chunk = x[i : i + frame]
            data = chunk[None, :] if channels == 1 else chunk.reshape(1, -1)
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
            f.sample_rate, f.pts, f.time_base = rate, i, tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return buf.getvalue()


def pages(data: bytes):
    """(offset, flags, granule, lacing, body) of each page, read independently."""
    out, off = [], 0
    while off < len(data):
        nseg = data[off + 26]
        lacing = data[off + 27 : off + 27 + nseg]
        size = 27 + nseg + sum(lacing)
        out.append((off, data[off + 5], struct.unpack_from("<q", data, off + 6)[0], lacing, size))
        off += size
    return out


def stream_length_48k(data: bytes) -> int:
    """What the encoder's stream says: last granule position minus pre-skip."""
    ps = pages(data)
    pre_skip = struct.unpack_from("<H", data, 27 + data[26] + 10)[0]
    assert ps[-1][1] & 4  # end-of-stream flag on the last page
    return ps[-1][2] - pre_skip


def decode_chunked(dec: OggOpusDecoder, data: bytes, sizes) -> np.ndarray:
    out, i = [], 0
    for n in sizes:
        if i >= len(data):
            break
        out.append(dec.feed(data[i : i + n]))
        i += n
    out.append(dec.feed(data[i:]))
    out.append(dec.finish())
    return np.concatenate(out)


def random_sizes(seed: int, hi: int):
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(1, hi))


def envelope(x: np.ndarray, rate: int) -> np.ndarray:
    w = rate // 50  # 20 ms
    n = x.size // w
    return np.sqrt(np.mean(x[: n * w].astype(np.float64).reshape(n, w) ** 2, axis=1))


@pytest.fixture(scope="module")
def utterance():
    x = speech(16000, 3.0)
    return x, encode(x, 16000)


@pytest.mark.parametrize("out_rate", [48000, 16000, 24000])
def test_length_exact_whatever_the_chunking(utterance, out_rate):
    x, data = utterance
    n48 = stream_length_48k(data)
    assert n48 == 3 * x.size  # the encoder's granule position: 3.000 s exactly
    want = StreamResampler(48000, out_rate).expected_length(n48)
    ref = None
    for seed, hi in ((1, 4000), (2, 100), (3, 2)):
        dec = OggOpusDecoder(out_rate)
        y = decode_chunked(dec, data, random_sizes(seed, hi))
        assert y.size == want
        assert dec.samples_out == want and dec.bytes_in == 0  # reset for the next stream
        if ref is None:
            ref = y
        assert np.array_equal(y, ref)  # the chunking changes nothing


def test_one_byte_at_a_time(utterance):
    x, data = utterance
    dec = OggOpusDecoder(16000)
    got = np.concatenate([dec.feed(data[i : i + 1]) for i in range(len(data))] + [dec.finish()])
    assert got.size == x.size


def test_envelope_follows_the_speech(utterance):
    x, data = utterance
    y = decode_chunked(OggOpusDecoder(16000), data, random_sizes(4, 700))
    a, b = envelope(x, 16000), envelope(y, 16000)
    r = np.corrcoef(a, b)[0, 1]
    assert r > 0.9, r
    # and sample by sample it is the same waveform, lined up (pre-skip honoured)
    c = np.corrcoef(x.astype(float), y.astype(float))[0, 1]
    assert c > 0.8, c


def test_48k_encoder_input_and_stereo():
    x = speech(48000, 1.0, seed=3)
    stereo = np.stack([x, (x * 0.5).astype(np.int16)], axis=1)
    data = encode(stereo, 48000, channels=2, bitrate=48000)
    y = decode_chunked(OggOpusDecoder(48000), data, random_sizes(6, 900))
    assert y.size == stream_length_48k(data) == x.size
    r = np.corrcoef(envelope(0.75 * x, 48000), envelope(y, 48000))[0, 1]
    assert r > 0.9


def test_chained_streams_go_on():
    a, b = speech(16000, 1.0, seed=1), speech(16000, 0.5, seed=2)
    data = encode(a, 16000) + encode(b, 16000)
    y = decode_chunked(OggOpusDecoder(48000), data, random_sizes(7, 500))
    assert y.size == 3 * (a.size + b.size)


def test_bytes_per_second_pcm_vs_opus(utterance):
    x, data = utterance
    seconds = x.size / 16000
    pcm_bps = x.size * 2 / seconds
    opus_bps = len(data) / seconds
    print(f"\nspeech, 16 kHz: PCM s16le {pcm_bps:,.0f} B/s; Ogg Opus 24 kbit/s {opus_bps:,.0f} B/s "
          f"({pcm_bps / opus_bps:.1f}x smaller)")
    assert pcm_bps == 32000
    assert opus_bps < pcm_bps / 8


# -- malformed streams ---------------------------------------------------------


def test_garbage_names_what_and_where():
    dec = OggOpusDecoder(16000)
    with pytest.raises(DecodeError) as info:
        dec.feed(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    assert "expected a page ('OggS') at byte 0" in str(info.value)
    assert info.value.offset == 0
    assert dec.bytes_in == 0


def test_truncated_stream(utterance):
    x, data = utterance
    ps = pages(data)
    cut = ps[3][0] + 100  # inside the fourth page
    dec = OggOpusDecoder(16000)
    head = dec.feed(data[:cut])
    with pytest.raises(DecodeError) as info:
        dec.finish()
    assert f"ends inside the page at byte {ps[3][0]}" in str(info.value)
    assert f"100 of {ps[3][4]} bytes" in str(info.value)
    # nothing changed: the rest of the stream still decodes to the whole
    rest = dec.feed(data[cut:])
    tail = dec.finish()
    assert head.size + rest.size + tail.size == x.size
    # cut at a page boundary: no end-of-stream page
    dec = OggOpusDecoder(16000)
    dec.feed(data[: ps[-1][0]])
    with pytest.raises(DecodeError, match=f"ends at byte {ps[-1][0]} without its end-of-stream page"):
        dec.finish()


def test_corrupt_page_changes_nothing(utterance):
    x, data = utterance
    ps = pages(data)
    ref = decode_chunked(OggOpusDecoder(16000), data, [len(data)])
    bad = bytearray(data)
    at = ps[4][0]
    bad[at + 27 + len(ps[4][3]) + 10] ^= 0x55  # inside the fifth page's body
    dec = OggOpusDecoder(16000)
    first = dec.feed(bytes(bad[: ps[3][0]]))  # pages 0-2 taken
    with pytest.raises(DecodeError) as info:
        dec.feed(bytes(bad[ps[3][0] :]))  # page 3 good, page 4 corrupt: nothing of it kept
    assert f"page at byte {at}: CRC mismatch" in str(info.value)
    assert info.value.offset == at
    assert dec.bytes_in == ps[3][0]
    rest = dec.feed(data[ps[3][0] :])  # the good bytes from where the failed call began
    got = np.concatenate([first, rest, dec.finish()])
    assert np.array_equal(got, ref)


def _page(serial: int, seq: int, granule: int, flags: int, packets: list[bytes]) -> bytes:
    lacing = bytearray()
    for p in packets:
        lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
    hdr = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(lacing))
    page = bytearray(hdr + bytes(lacing) + b"".join(packets))
    page[22:26] = ogg_crc(page).to_bytes(4, "little")
    return bytes(page)


def _head(pre_skip: int = 312, channels: int = 1) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, 16000, 0, 0)


def test_hand_made_stream_and_malformed_packet():
    frame = av_encode_one_frame()
    head = _page(7, 0, 0, 2, [_head()])
    tags = _page(7, 1, 0, 0, [b"OpusTags" + struct.pack("<I", 0) + struct.pack("<I", 0)])
    audio = _page(7, 2, 312 + 3 * 960 - 500, 4, [frame, frame, frame])  # end-trimmed by 500
    y = decode_chunked(OggOpusDecoder(48000), head + tags + audio, [5, 50, 7])
    assert y.size == 3 * 960 - 500
    bad = _page(7, 2, 960 * 2, 0, [frame, bytes([frame[0] | 3, 0])])  # code 3 with 0 frames
    dec = OggOpusDecoder(48000)
    dec.feed(head + tags)
    with pytest.raises(DecodeError) as info:
        dec.feed(bad)
    assert "malformed Opus packet in the page at byte" in str(info.value)
    assert "0 frames" in str(info.value)
    assert dec.bytes_in == len(head + tags)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: _page(1, 0, 0, 2, [b"\x01vorbis" + bytes(23)]), ["not an OpusHead"]),
        (lambda: _page(1, 0, 0, 0, [_head()]), ["no BOS flag"]),
        (lambda: _page(1, 0, 0, 2, [_head(channels=3)]), ["3 channels", "family 0"]),
        (lambda: _page(1, 0, 0, 2, [_head()]) + _page(1, 2, 0, 0, [b"OpusTags"]), ["sequence number 2, expected 1", "missing"]),
        (lambda: _page(1, 0, 0, 2, [_head()]) + _page(2, 1, 0, 0, [b"OpusTags"]), ["belongs to stream 2"]),
        (lambda: _page(1, 0, 0, 2, [_head()]) + _page(1, 1, 0, 0, [b"NotTags!"]), ["expected the OpusTags"]),
        (lambda: _page(1, 0, 0, 2, [_head()]) + _page(1, 1, 0, 1, [b"OpusTags"]), ["continues a packet, but none is open"]),
    ],
)
def test_malformed_headers(make, words):
    dec = OggOpusDecoder(16000)
    with pytest.raises(DecodeError) as info:
        dec.feed(make())
    for w in words:
        assert w in str(info.value), str(info.value)
    assert dec.bytes_in == 0


def test_first_page_granule_too_small():
    frame = av_encode_one_frame()
    data = (_page(7, 0, 0, 2, [_head()]) + _page(7, 1, 0, 0, [b"OpusTags" + bytes(8)])
            + _page(7, 2, 100, 0, [frame, frame]))
    with pytest.raises(DecodeError, match="granule position 100, less than its 1920 samples"):
        OggOpusDecoder(16000).feed(data)


def test_nothing_fed_and_wrong_types():
    dec = OggOpusDecoder(16000)
    assert dec.finish().size == 0  # no stream: nothing to end
    with pytest.raises(TypeError, match="bytes-like object, got str"):
        dec.feed("OggS")
    with pytest.raises(DecodeError, match="ends inside the page at byte 0"):
        dec.feed(b"OggS")
        dec.finish()


def test_data_after_the_end():
    x = speech(16000, 0.2)
    data = encode(x, 16000)
    dec = OggOpusDecoder(16000)
    dec.feed(data)
    with pytest.raises(DecodeError, match=f"expected a page \\('OggS'\\) at byte {len(data)}"):
        dec.feed(b"junk" * 20)


_FRAME: list[bytes] = []


def av_encode_one_frame() -> bytes:
    """One 20 ms Opus packet (a real one, from the encoder)."""
    if not _FRAME:
        data = encode(speech(48000, 0.1), 48000)
        r = OggPacketReader()
        pkts = r.feed(data)
        _FRAME.append(next(p.data for p in pkts[2:] if opus_packet_samples(p.data) == 960))
    return _FRAME[0]


@pytest.mark.parametrize(
    "packet, samples",
    [
        (bytes([16 << 3 | 0]) + b"x" * 10, 120),  # CELT 2.5 ms
        (bytes([31 << 3 | 1]) + b"x" * 10, 1920),  # two 20 ms frames
        (bytes([1 << 3 | 2, 3]) + b"x" * 5, 1920),  # SILK 20 ms, two frames of 3 + 2
        (bytes([3 << 3 | 3, 2]) + b"x" * 4, 5760),  # SILK 60 ms x 2 = 120 ms, CBR
        (bytes([31 << 3 | 3, 0x80 | 3, 1, 2]) + b"x" * 6, 2880),  # VBR 3 frames
        (bytes([31 << 3 | 3, 0x40 | 1, 2]) + b"x" * 6, 960),  # padded
    ],
)
def test_packet_samples(packet, samples):
    assert opus_packet_samples(packet) == samples


@pytest.mark.parametrize(
    "packet, words",
    [
        (b"", "empty"),
        (bytes([1]) + b"x" * 11, "two equal frames"),
        (bytes([2, 200]) + b"x", "do not fit"),
        (bytes([3 << 3 | 3, 3]) + b"x" * 3, "120 ms"),
        (bytes([3]), "frame count"),
        (bytes([31 << 3 | 3, 0x40 | 1, 255]), "padding"),
        (bytes([0]) + b"x" * 1276, "1276 bytes"),
    ],
)
def test_packet_malformed(packet, words):
    with pytest.raises(ValueError, match=words):
        opus_packet_samples(packet)


def test_damaged_streams_raise_decode_error_only(utterance):
    """Random damage (flipped bytes, cuts, splices), fed in random chunks:
    DecodeError or samples, nothing else; a failing call keeps nothing."""
    _, data = utterance
    rng = np.random.default_rng(12)
    outcomes = {"ok": 0, "error": 0}
    for trial in range(150):
        bad = bytearray(data)
        kind = trial % 3
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                bad[int(rng.integers(0, len(bad)))] ^= int(rng.integers(1, 256))
        elif kind == 1:
            bad = bad[: int(rng.integers(0, len(bad)))]
        else:
            a, b = sorted(int(v) for v in rng.integers(0, len(bad), 2))
            bad = bad[:a] + bad[b:]
        dec = OggOpusDecoder(16000)
        i, total = 0, 0
        try:
            while i < len(bad):
                n = int(rng.integers(1, 3000))
                before = dec.bytes_in
                try:
                    total += dec.feed(bytes(bad[i : i + n])).size
                except DecodeError:
                    assert dec.bytes_in == before  # nothing of the call kept
                    raise
                i += n
            total += dec.finish().size
            outcomes["ok"] += 1
        except DecodeError as exc:
            assert exc.offset >= 0
            outcomes["error"] += 1
    assert outcomes["error"] > 50  # the damage is seen, mostly by the CRC
