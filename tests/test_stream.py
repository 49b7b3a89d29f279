"""`codec stream` through fake sound devices (no audio hardware in CI), packets and packet loss."""

import json
import signal
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

import codec.live
from codec.packets import StreamInfo, end_packet, packet_bytes, read_packets, read_stream_header, stream_header
from tests.conftest import run_cli as invoke
from tests.conftest import tone, write_audio


class FakeSoundDevice:
    """Stands in for the sounddevice module: a microphone playing ``signal`` and a speaker
    that records what it is given. ``rates`` are the only rates the device accepts."""

    def __init__(self, signal: np.ndarray, rate: int, rates=(16000, 48000), slow_output: bool = False,
                 interrupt_after: int | None = None, interruption: BaseException | None = None):
        self.signal, self.rate, self.rates = signal, rate, rates
        self.slow_output, self.interrupt_after = slow_output, interrupt_after
        self.interruption = interruption or KeyboardInterrupt()   # Ctrl-C, unless another stop is given
        self.played = []
        self.reads = 0
        fake = self

        class InputStream:
            latency = 0.01

            def __init__(self, samplerate, channels, blocksize, **kwargs):
                assert samplerate in fake.rates
                self.position = 0

            def start(self):
                pass

            def read(self, frames):
                fake.reads += 1
                if fake.interrupt_after is not None and fake.reads > fake.interrupt_after:
                    raise fake.interruption
                block = fake.signal[self.position:self.position + frames]
                self.position += frames
                block = np.pad(block, ((0, frames - len(block)), (0, 0)))
                return block.astype(np.float32), fake.reads % 7 == 0  # an overflow now and then

            def stop(self):
                pass

            def close(self):
                pass

        class OutputStream(InputStream):
            def write(self, data):
                fake.played.append(np.array(data))
                if fake.slow_output:
                    time.sleep(0.03)   # slower than the 20 ms blocks
                    return True        # PortAudio reports the speaker ran dry
                return False

        self.InputStream, self.OutputStream = InputStream, OutputStream

    def check_input_settings(self, device=None, samplerate=None, channels=None):
        if samplerate not in self.rates:
            raise ValueError("Invalid sample rate")

    check_output_settings = check_input_settings

    def query_devices(self, device=None, kind=None):
        return {"default_samplerate": float(self.rates[-1]), "name": "fake"} if kind else "0 fake device"



@pytest.fixture
def speech(tmp_path):
    return write_audio(tmp_path / "in.wav", tone(1.23, 44100), 44100)


@pytest.mark.parametrize("runtime", ["torch", "onnx", "ONNX-int8"])   # (in any case)
def test_file_to_file_keeps_the_exact_length(tiny_model_dir, speech, tmp_path, runtime):
    out = tmp_path / "out.wav"
    result = invoke("stream", "--input", speech, "--output", out, "--model", tiny_model_dir, "--fast",
                    "--runtime", runtime)
    assert result.exit_code == 0, result.output
    assert (sf.info(str(out)).frames, sf.info(str(out)).samplerate) == (sf.info(str(speech)).frames, 44100)


def test_packet_loss_is_concealed_and_the_saved_stream_decodes(tiny_model_dir, speech, tmp_path):
    out, saved = tmp_path / "out.wav", tmp_path / "stream.cods"
    result = invoke("stream", "--input", speech, "--output", out, "--save", saved, "--packet-loss", "0.05",
                    "--model", tiny_model_dir, "--fast")
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).frames == sf.info(str(speech)).frames
    decoded = tmp_path / "decoded.wav"
    assert invoke("decode", saved, decoded, "--model", tiny_model_dir).exit_code == 0
    assert sf.info(str(decoded)).frames == sf.info(str(speech)).frames
    described = invoke("info", saved, "--json")
    assert described.exit_code == 0 and json.loads(described.stdout)["format"] == "packet stream"
    # damage the saved stream: a dropped packet and a corrupted one are concealed, never a crash
    data = bytearray(saved.read_bytes())
    data[300] ^= 0xFF
    del data[500:560]
    saved.write_bytes(bytes(data))
    result = invoke("decode", saved, tmp_path / "damaged.wav", "--model", tiny_model_dir)
    assert result.exit_code == 0 and "concealed" in result.output
    assert sf.info(str(tmp_path / "damaged.wav")).frames == sf.info(str(speech)).frames


def _saved_stream(model_dir, speech, tmp_path):
    """``codec stream --save`` of ``speech``: the file, its header's info and its packets."""
    saved = tmp_path / "stream.cods"
    assert invoke("stream", "--input", speech, "--save", saved, "--no-play", "--model", model_dir,
                  "--fast").exit_code == 0
    data = saved.read_bytes()
    info, offset = read_stream_header(data)
    return saved, info, list(read_packets(data, offset, info))


def test_saved_stream_with_a_duplicate_a_swap_and_damage_before_the_end(tiny_model_dir, speech, tmp_path):
    saved, info, packets = _saved_stream(tiny_model_dir, speech, tmp_path)
    body, end = packets[:-1], packets[-1]
    assert end.is_end and len(body) > 12
    order = body[:4] + [body[3]] + [body[5], body[4]] + body[6:-3]   # a duplicate, a swap, the last 3 damaged
    _forged(saved, info, order + [end])
    result = invoke("decode", saved, tmp_path / "out.wav", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    # the swap loses one packet (the late one is dropped with the duplicate), the damage three
    assert "4 lost or damaged packets were concealed" in result.output
    assert "2 duplicated or out-of-order packets were dropped" in result.output
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(speech)).frames


def test_a_saved_stream_whose_gap_or_length_no_loss_explains_is_refused(tiny_model_dir, speech, tmp_path):
    """A small crafted file must not ask for gigabytes of concealed audio."""
    saved, info, packets = _saved_stream(tiny_model_dir, speech, tmp_path)
    first, end = packets[0], packets[-1]
    step = int(59 * info.frame_rate / first.codes.shape[-1])   # each gap just under the 60 s one may be
    bomb = b"".join(packet_bytes(n * step, first.codes, info) for n in range(20))
    for forged, message in [
            (packet_bytes(0, first.codes, info) + packet_bytes(32767, first.codes, info), "a gap of 32766 packets"),
            (packet_bytes(0, first.codes, info) + end_packet(1, 10**11), "the end packet gives 100000000000 samples"),
            (bomb, "its lost packets add up to 1121 s, against 0.4 s received")]:
        saved.write_bytes(stream_header(info) + forged)
        result = invoke("decode", saved, tmp_path / "out.wav", "--model", tiny_model_dir)
        assert result.exit_code == 1 and "stream.cods: damaged: " in result.output and message in result.output
    assert not (tmp_path / "out.wav").exists() and end.is_end


def test_a_stream_with_no_samples_is_not_written_as_an_empty_flac(tiny_model_dir, tmp_path):
    empty = write_audio(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    saved, flac = tmp_path / "stream.cods", tmp_path / "out.flac"
    result = invoke("stream", "--input", empty, "--output", flac, "--save", saved, "--no-play",
                    "--model", tiny_model_dir, "--fast")
    assert result.exit_code == 1
    assert "the stream gave no samples, and an empty FLAC file cannot be written" in result.output
    assert not flac.exists()
    result = invoke("decode", saved, flac, "--model", tiny_model_dir)
    assert result.exit_code == 1 and "holds no samples, and an empty FLAC file cannot be written" in result.output
    assert not flac.exists()


def test_the_python_api_decodes_a_saved_stream_as_the_cli_does(tiny_model_dir, speech, tmp_path):
    import codec as api

    saved = tmp_path / "stream.cods"
    assert invoke("stream", "--input", speech, "--save", saved, "--no-play", "--model", tiny_model_dir,
                  "--fast").exit_code == 0
    api.decode_file(saved, tmp_path / "out.wav", model=tiny_model_dir)
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(speech)).frames
    with pytest.raises(codec.live.CodecError, match=r"stream.cods: is a packet stream .* codec.decode_file"):
        api.Codes.load(saved)
    (tmp_path / "junk.codes").write_bytes(b"RIFF" + bytes(60))
    with pytest.raises(codec.live.CodecError, match=r"junk.codes: not a .codes file"):
        api.Codes.load(tmp_path / "junk.codes")


def test_info_counts_a_saved_streams_packets_without_decoding_them(tiny_model_dir, speech, tmp_path):
    saved = tmp_path / "stream.cods"
    assert invoke("stream", "--input", speech, "--save", saved, "--no-play", "--model", tiny_model_dir,
                  "--fast", "--bitrate", "3").exit_code == 0
    data = saved.read_bytes()
    info, offset = read_stream_header(data)
    packets = list(read_packets(data, offset, info))
    values = json.loads(invoke("info", saved, "--json").stdout)
    assert values["duration_s"] == round(sf.info(str(speech)).frames / sf.info(str(speech)).samplerate, 3)
    assert (values["packets"], values["lost_packets"], values["codebooks"]) == (len(packets) - 1, 0, 6)
    assert values["frames"] == sum(p.codes.shape[-1] for p in packets[:-1]) and "ended" not in values
    assert values["nominal_kbps"] == 3.0 and values["file_kbps"] > 3.0    # the packet headers cost bits
    assert values["file_kbps"] == pytest.approx(len(data) * 8 / values["duration_s"] / 1000, abs=0.01)   # over it
    # one packet dropped, the end cut off mid-packet: counted, and the length is the frames received
    # and concealed, as decoding gives it
    second = offset + len(packet_bytes(0, packets[0].codes, info))
    dropped = data[:second] + data[second + len(packet_bytes(1, packets[1].codes, info)):-20]
    saved.write_bytes(dropped)
    values = json.loads(invoke("info", saved, "--json").stdout)
    assert values["lost_packets"] == 1 and values["ended"] is False and values["damaged_bytes"] > 0
    concealed = values["lost_packets"] * packets[0].codes.shape[-1]
    assert values["duration_s"] == round((values["frames"] + concealed) / info.frame_rate, 3)
    invoke("decode", saved, tmp_path / "cut.wav", "--model", tiny_model_dir)
    assert values["duration_s"] == pytest.approx(sf.info(str(tmp_path / "cut.wav")).duration, abs=0.03)


def test_microphone_to_speaker_with_resampling_and_ctrl_c(tiny_model_dir, tmp_path, monkeypatch):
    fake = FakeSoundDevice(tone(2.0, 48000), 48000, rates=(48000,), interrupt_after=40)
    monkeypatch.setattr(codec.live, "import_sounddevice", lambda *hint: fake)
    out = tmp_path / "recorded.wav"
    result = invoke("stream", "--output", out, "--play", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "stopped (Ctrl-C)" in result.output
    assert sf.info(str(out)).samplerate == 48000 and sf.info(str(out)).frames == 40 * 960
    assert sum(len(p) for p in fake.played) == 40 * 960


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_a_block_is_coded_ends_the_saved_stream_with_its_end_packet(tiny_model_dir, tmp_path,
                                                                                  monkeypatch, signum):
    """Ctrl-C (or SIGTERM) mostly arrives while a block is being coded, not while the next is read:
    the block is finished and the saved stream ends as at the end of the input, so that it does
    not read as cut short."""
    import os

    fake = FakeSoundDevice(tone(2.0, 16000), 16000)
    play = fake.OutputStream.write

    def write(self, data):   # the speaker's write, in the middle of coding block 15
        if len(fake.played) == 14:
            os.kill(os.getpid(), signum)
        return play(self, data)

    monkeypatch.setattr(fake.OutputStream, "write", write)
    monkeypatch.setattr(codec.live, "import_sounddevice", lambda *hint: fake)
    out, saved = tmp_path / "recorded.wav", tmp_path / "recorded.cods"
    from codec.signals import STOPPING_SIGNALS, stop_on_termination

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, *STOPPING_SIGNALS)}
    # a shell's background job starts with SIGINT ignored, and Python keeps it so: the stream
    # below, from a microphone that never ends, would then never stop
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_on_termination()   # as the `codec` command does on start
    try:
        result = invoke("stream", "--output", out, "--play", "--save", saved, "--model", tiny_model_dir)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"stopped ({name}); what was recorded is kept" in result.output, result.output
    assert sf.info(str(out)).frames == 15 * 320
    values = json.loads(invoke("info", saved, "--json").stdout)
    assert "ended" not in values and values["duration_s"] == 15 * 320 / 16000
    decoded = invoke("decode", saved, tmp_path / "decoded.wav", "--model", tiny_model_dir)
    assert decoded.exit_code == 0 and "warning" not in decoded.output, decoded.output


def test_sigterm_keeps_the_recording_and_exits_143(tiny_model_dir, tmp_path, monkeypatch):
    from codec.signals import Terminated

    fake = FakeSoundDevice(tone(2.0, 16000), 16000, interrupt_after=20, interruption=Terminated(signal.SIGTERM))
    monkeypatch.setattr(codec.live, "import_sounddevice", lambda *hint: fake)
    out = tmp_path / "recorded.wav"
    result = invoke("stream", "--output", out, "--model", tiny_model_dir)
    assert result.exit_code == 143 and "stopped (SIGTERM); what was recorded is kept" in result.output, result.output
    assert sf.info(str(out)).frames == 20 * 320


def test_slow_device_counts_underruns_and_keeps_going(tiny_model_dir, tmp_path, monkeypatch, speech):
    fake = FakeSoundDevice(tone(1.0, 16000), 16000, slow_output=True)
    monkeypatch.setattr(codec.live, "import_sounddevice", lambda *hint: fake)
    out = tmp_path / "out.wav"
    result = invoke("stream", "--input", speech, "--output", out, "--play", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "underruns 0" not in result.output.splitlines()[-1]
    assert sf.info(str(out)).frames == sf.info(str(speech)).frames


def test_overruns_are_counted(tiny_model_dir, tmp_path, monkeypatch):
    fake = FakeSoundDevice(tone(1.0, 16000), 16000, interrupt_after=30)
    monkeypatch.setattr(codec.live, "import_sounddevice", lambda *hint: fake)
    result = invoke("stream", "--output", tmp_path / "o.wav", "--no-play", "--model", tiny_model_dir)
    assert result.exit_code == 0
    assert "overruns 4" in result.output


def test_an_unusable_output_path_is_named_by_its_option(tiny_model_dir, tmp_path):
    """--output and --save are both files: an error about either says which."""
    source = write_audio(tmp_path / "in.wav", tone(0.2, 16000), 16000)
    for option, path in (("--save", tmp_path / "nodir" / "x.cods"), ("--output", tmp_path / "nodir" / "x.wav")):
        other = ("--output", tmp_path / "o.wav") if option == "--save" else ("--save", tmp_path / "s.cods")
        result = invoke("stream", "--input", source, option, path, *other, "--no-play", "--model", tiny_model_dir)
        assert result.exit_code == 1, result.output
        assert f"error: {option}: {path.parent}: no such directory for the output" in result.output, result.output


def test_missing_portaudio_names_the_fix(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)    # the import fails as without PortAudio
    source = write_audio(tmp_path / "in.wav", tone(0.2, 16000), 16000)
    for options, instead in (((), "or stream a file with --input FILE"),
                             (("--input", source, "--play"), "with --output FILE instead of --play"),
                             (("--input", source), "with --output FILE (playing it is the default without"),
                             (("--input", source, "--save", tmp_path / "s.cods"), "or add --no-play to only save"),
                             (("--input", source, "--output", tmp_path / "o.wav", "--play"),
                              f"or drop --play: --output {tmp_path / 'o.wav'} is written without an audio device")):
        result = invoke("stream", "--model", tiny_model_dir, *options)
        assert result.exit_code == 1 and "apt-get install libportaudio2" in result.output, result.output
        assert instead in result.output and len(result.output.strip().splitlines()) == 1
    # found before the model is loaded (seconds for a large one)
    result = invoke("stream", "--model", tmp_path / "no-such-model")
    assert result.exit_code == 1 and "apt-get install libportaudio2" in result.output


def _forged(saved, info, packets):
    """Rewrite ``saved`` from ``packets`` (frame packets and the end packet)."""
    body = b"".join(end_packet(p.sequence, p.total_samples) if p.is_end else packet_bytes(p.sequence, p.codes, info)
                    for p in packets)
    saved.write_bytes(stream_header(info) + body)


def test_a_lost_first_packet_of_several_frames_keeps_the_timing(tiny_model_dir, tmp_path):
    """A lost packet is concealed with the sender's packet size (here 5 frames), not the last
    size seen (none yet): what follows is decoded where it belongs, not 80 ms early."""
    source = write_audio(tmp_path / "in.wav", tone(2.0, 16000, 220.0) * np.linspace(0.2, 1, 32000)[:, None], 16000)
    saved = tmp_path / "stream.cods"
    assert invoke("stream", "--input", source, "--save", saved, "--no-play", "--model", tiny_model_dir, "--fast",
                  "--packet-frames", "5").exit_code == 0
    assert invoke("decode", saved, tmp_path / "intact.wav", "--model", tiny_model_dir).exit_code == 0
    data = saved.read_bytes()
    info, offset = read_stream_header(data)
    packets = list(read_packets(data, offset, info))
    assert packets[0].codes.shape[-1] == 5
    _forged(saved, info, packets[1:])
    result = invoke("decode", saved, tmp_path / "lost.wav", "--model", tiny_model_dir)
    assert result.exit_code == 0 and "1 lost or damaged packets were concealed" in result.output
    intact, lost = sf.read(str(tmp_path / "intact.wav"))[0], sf.read(str(tmp_path / "lost.wav"))[0]
    assert len(lost) == len(intact) == 32000
    np.testing.assert_allclose(lost[16000:], intact[16000:], atol=1e-3)   # once the decoder's context is past the gap


def test_bytes_after_the_end_packet_are_reported_not_read(tiny_model_dir, speech, tmp_path):
    """Two streams joined: the first is decoded with a warning, and info counts the second's bytes
    instead of 65000 lost packets; a duplicate is counted as one, not as a wrap of the sequence."""
    saved, info, packets = _saved_stream(tiny_model_dir, speech, tmp_path)
    data = saved.read_bytes()
    saved.write_bytes(data + data)
    result = invoke("decode", saved, tmp_path / "out.wav", "--model", tiny_model_dir)
    assert result.exit_code == 0 and f"{len(data)} bytes after its end packet were ignored" in result.output
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(speech)).frames
    values = json.loads(invoke("info", saved, "--json").stdout)
    assert (values["lost_packets"], values["bytes_after_end"], values["packets"]) == (0, len(data), len(packets) - 1)
    _forged(saved, info, packets[:3] + [packets[1]] + packets[3:])
    values = json.loads(invoke("info", saved, "--json").stdout)
    assert (values["lost_packets"], values["stale_packets"], "bytes_after_end" in values) == (0, 1, False)


def test_a_stream_whose_header_does_not_fit_its_packets_is_refused(tiny_model_dir, speech, tmp_path):
    """A header rewritten to many channels at a high rate (its packets then read as damage) is
    refused at once instead of concealing its length in 64 channels at 384 kHz."""
    saved, info, packets = _saved_stream(tiny_model_dir, speech, tmp_path)
    forged = StreamInfo(**{**info.__dict__, "channels": 64, "sample_rate": 384000})
    saved.write_bytes(stream_header(forged) + saved.read_bytes()[len(stream_header(info)):])
    result = invoke("decode", saved, tmp_path / "out.wav", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "none of its packets of codes can be read" in result.output
    assert "64 channels at 384000 Hz" in result.output and not (tmp_path / "out.wav").exists()
    body = saved.read_bytes()[len(stream_header(forged)):-len(end_packet(0, 0))]   # and no end packet
    saved.write_bytes(stream_header(forged) + body)
    result = invoke("decode", saved, tmp_path / "out.wav", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "none of its packets of codes can be read" in result.output
    saved.write_bytes(b"CODS")
    result = invoke("decode", saved, tmp_path / "out.wav", "--model", tiny_model_dir)
    assert result.exit_code == 1 and "truncated in the stream header (4 bytes)" in result.output


def test_a_long_stream_is_decoded_in_blocks(tiny_model):
    """Memory does not grow with the stream: consecutive packets' codes are joined into steps of
    about block_frames (2 bytes a code), and decoded and concealed a step at a time."""
    import codec.saved_stream as saved_stream

    plan = saved_stream._Plan(block_frames=10)
    for sequence in range(10):
        plan.codes(np.full((1, 6, 3), 1000, dtype=np.int64), sequence)
    plan.conceal(25)
    plan.finish()
    assert [step[1].shape[-1] for step in plan.steps if step[0] == "codes"] == [12, 12, 6]
    assert all(step[1].dtype == np.uint16 for step in plan.steps if step[0] == "codes")
    blocks = list(saved_stream._model_rate_blocks(tiny_model, plan, 1, "s.cods"))
    frames = [b.shape[-1] / tiny_model.frame_size for b in blocks]
    assert len(blocks) == 7 and max(frames) <= 12   # 3 of codes, 3 concealed, the flush
    assert sum(b.shape[-1] for b in blocks) == 55 * tiny_model.frame_size


def test_packets_round_trip_and_resynchronise():
    info = StreamInfo("m", "w", 16000, 2, 50, 1024)
    rng = np.random.default_rng(0)
    packets = [rng.integers(0, 1024, (2, 6, 3)) for _ in range(5)]
    data = stream_header(info) + b"".join(packet_bytes(i, p, info) for i, p in enumerate(packets)) + end_packet(5, 777)
    parsed, offset = read_stream_header(data)
    assert parsed == info
    received = list(read_packets(data, offset, info))
    assert [p.sequence for p in received] == [0, 1, 2, 3, 4, 5] and received[-1].total_samples == 777
    for sent, got in zip(packets, received, strict=False):
        np.testing.assert_array_equal(sent, got.codes)
    damaged = bytearray(data)
    damaged[offset + 30] ^= 0x10          # corrupt packet 0
    assert [p.sequence for p in read_packets(bytes(damaged), offset, info)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("changes", [{"channels": "abc"}, {"frame_rate": "x"}, {"sample_rate": 10 ** 12},
                                     {"sample_rate": 1}, {"frame_rate": 1e308}, {"channels": 5000},
                                     {"model": 3}, {"codebook_size": True}, {"weights": "f" * 100},
                                     {"entropy_weights": "0" * 65}])
def test_forged_stream_headers_are_refused_naming_the_field(changes):
    """As the .codes reader does; weights longer than a whole SHA-256 are damage, not shown whole."""
    from codec.bitstream import BitstreamError

    data = stream_header(StreamInfo(**{**StreamInfo("m", "w", 16000, 1, 50, 1024).__dict__, **changes}))
    (field,) = changes
    expected = rf"corrupt stream header metadata \(invalid value of {field}: .{{1,40}}\)$"
    with pytest.raises(BitstreamError, match=expected):
        read_stream_header(data)


def test_the_python_api_names_a_codes_file_with_a_stream_magic_as_damaged(tmp_path):
    """``Codes.load`` sorts packet streams out by their magic first: a .codes file whose magic lost one
    bit is named as damaged, as ``codec decode`` names it, not as a packet stream."""
    from codec import Codes
    from codec.bitstream import CodesFile, CodesMetadata, to_bytes
    from codec.errors import CodecError

    meta = CodesMetadata(model="m", weights="w", sample_rate=16000, channels=1, samples=3200, frame_rate=50,
                         codebooks=2, codebook_size=1024, frames=10)
    data = bytearray(to_bytes(CodesFile(meta, np.zeros((1, 2, 10), dtype=np.int64))))
    data[3] ^= 0x10
    (tmp_path / "flipped.codes").write_bytes(bytes(data))
    with pytest.raises(CodecError, match=r"flipped.codes: corrupt header: the magic bytes .* read CODS .* corrupted"):
        Codes.load(tmp_path / "flipped.codes")


def test_a_magic_damaged_into_the_other_kind_of_file_is_named_as_damage():
    """``CODC`` (.codes) and ``CODS`` (packet stream) differ by one bit: a flip there sends a file to
    the other reader, whose error ("unsupported flags", "stream version 2") would not say damage."""
    from codec.bitstream import BitstreamError, CodesFile, CodesMetadata, from_bytes, to_bytes

    meta = CodesMetadata(model="m", weights="w", sample_rate=16000, channels=1, samples=3200, frame_rate=50,
                         codebooks=2, codebook_size=1024, frames=10)
    codes = bytearray(to_bytes(CodesFile(meta, np.zeros((1, 2, 10), dtype=np.int64))))
    info = StreamInfo("m", "w", 16000, 1, 50, 1024)
    stream = bytearray(stream_header(info) + packet_bytes(0, np.zeros((1, 2, 1), dtype=np.int64), info))
    codes[3] ^= 0x10
    stream[3] ^= 0x10
    assert codes[:4] == b"CODS" and stream[:4] == b"CODC"
    with pytest.raises(BitstreamError, match="read CODS .* shows a .codes file .* corrupted"):
        read_stream_header(bytes(codes))
    with pytest.raises(BitstreamError, match="read CODC .* shows a packet stream .* corrupted"):
        from_bytes(bytes(stream))
    codes[3] ^= 0x10
    codes[9] ^= 0x01   # damaged elsewhere too: not a .codes file by its CRC, so the stream reader's own error
    codes[3] ^= 0x10
    with pytest.raises(BitstreamError, match="unsupported packet stream version"):
        read_stream_header(bytes(codes))


def test_stream_never_writes_over_its_input_or_twice_to_one_file(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    before = source.read_bytes()
    same_input = invoke("stream", "--input", source, "--output", source, "--fast", "--force", "--model", tiny_model_dir)
    assert same_input.exit_code == 1 and "overwrite the input" in same_input.output
    saved_over = invoke("stream", "--input", source, "--save", source, "--no-play", "--fast", "--force",
                        "--model", tiny_model_dir)
    assert saved_over.exit_code == 1 and "overwrite the input" in saved_over.output
    assert source.read_bytes() == before
    twice = invoke("stream", "--input", source, "--output", tmp_path / "o", "--save", tmp_path / "o", "--fast",
                   "--model", tiny_model_dir)
    assert twice.exit_code == 1 and "same file" in twice.output
    # other audio is never replaced by a saved stream, even with --force; an earlier stream may be
    other = write_audio(tmp_path / "take2.flac", tone(0.2, 16000), 16000)
    kept = other.read_bytes()
    replaced = invoke("stream", "--input", source, "--save", other, "--no-play", "--fast", "--force",
                      "--model", tiny_model_dir)
    assert replaced.exit_code == 1 and "take2.flac: is an audio file, which the packet stream would replace" \
        in replaced.output and other.read_bytes() == kept
    again = tmp_path / "earlier.wav"
    for _ in range(2):
        result = invoke("stream", "--input", source, "--save", again, "--no-play", "--fast", "--force",
                        "--model", tiny_model_dir)
        assert result.exit_code == 0, result.output


def test_a_failed_stream_leaves_no_file(tiny_model_dir, tmp_path):
    """An error after the recordings were opened drops them (no partial file, no need for --force
    on the rerun); bad paths and options fail before any work, each in one line."""
    nan = np.full((16000, 1), 0.1, np.float32)
    nan[8000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    out, saved = tmp_path / "out.wav", tmp_path / "out.cods"
    failed = invoke("stream", "--input", tmp_path / "nan.wav", "--output", out, "--save", saved, "--fast",
                    "--model", tiny_model_dir)
    assert failed.exit_code == 1 and "NaN or infinite samples (the first at sample 8000)" in failed.output
    no_entropy = invoke("stream", "--input", source, "--output", out, "--fast", "--entropy", "--model", tiny_model_dir)
    assert no_entropy.exit_code == 1 and "no entropy model" in no_entropy.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "nan.wav"]
    for args, message in ((("--output", tmp_path / "nodir" / "o.wav"), "no such directory"),
                          (("--save", tmp_path / "nodir" / "o.cods", "--no-play"), "no such directory"),
                          (("--output", tmp_path), "is a directory"),
                          (("--output", tmp_path / "o.mp3"), "cannot write '.mp3' files"),
                          (("--output", out, "--threads", "0"), "--threads 0"),
                          (("--output", out, "--device", "99"), "--device 99: with --input and without --play"),
                          (("--output", "-"), "--output -: codec stream reads and writes files, not stdin")):
        result = invoke("stream", "--input", source, *args, "--fast", "--model", tiny_model_dir)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "internal error" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "nan.wav"]
    done = invoke("stream", "--input", source, "--output", out, "--save", saved, "--fast", "--model", tiny_model_dir)
    assert done.exit_code == 0 and sf.info(out).frames == 4800 and saved.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "nan.wav", "out.cods", "out.wav"]


def test_a_paced_file_counts_a_stall_as_one_overrun(tmp_path):
    source = codec.live.FileSource(write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000), 0.02, realtime=True)
    flags = [source.read()[1] for _ in range(3)]
    time.sleep(0.1)                       # the coding fell 100 ms (5 blocks) behind
    flags += [source.read()[1] for _ in range(3)]
    source.close()
    # one overrun for the stall, and the blocks after it on time again (one on-time read may be
    # held up on a busy machine)
    assert flags[3] is True and flags.count(True) <= 2, flags
    unpaced = codec.live.FileSource(tmp_path / "in.wav", 0.02, realtime=False)
    assert unpaced.read()[1] is False
    unpaced.close()


def test_a_file_is_streamed_with_the_samples_it_holds(tmp_path):
    """libsndfile's MP3 decoder, read 20 ms at a time, altered a low-bitrate file's samples
    (by up to 0.4 here) after its first 16384."""
    rng = np.random.default_rng(0)
    audio = 0.3 * tone(4.0, 8000, 300.0)[:, 0] + 0.05 * rng.standard_normal(32000)
    sf.write(tmp_path / "low.mp3", audio.astype(np.float32), 8000, format="MP3", compression_level=0.9)
    whole = sf.read(tmp_path / "low.mp3", dtype="float32", always_2d=True)[0]
    source = codec.live.FileSource(tmp_path / "low.mp3", 0.02, realtime=False)
    blocks = []
    while (block := source.read()[0]) is not None:
        blocks.append(block)
    streamed = np.concatenate(blocks)
    source.close()
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_the_recording_counts_what_it_clips(tmp_path):
    sink = codec.live.FileSink(tmp_path / "out.wav", 16000, 1)
    sink.write(np.array([[0.5], [1.5], [-2.0], [1.0]], dtype=np.float32))
    sink.close()
    assert sink.clipped == 2
    np.testing.assert_allclose(sf.read(tmp_path / "out.wav")[0], [0.5, 1.0, -1.0, 1.0], atol=1e-4)


def test_float_input_beyond_full_scale_is_limited_with_a_warning(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "hot.wav", 4.0 * tone(0.5, 16000), 16000, subtype="FLOAT")
    result = invoke("stream", "--input", source, "--output", tmp_path / "out.wav", "--no-play",
                    "--model", tiny_model_dir, "--fast")
    assert result.exit_code == 0, result.output
    assert "samples were beyond ±1.0 full scale (peak 2) and were limited to ±1.0" in result.output   # as encode's
    assert np.isfinite(sf.read(tmp_path / "out.wav")[0]).all()
    # integer-scale samples held in floats: refused, as codec encode refuses them, and nothing kept
    source = write_audio(tmp_path / "huge.wav", 1e30 * tone(0.5, 16000), 16000, subtype="FLOAT")
    result = invoke("stream", "--input", source, "--output", tmp_path / "huge_out.wav", "--no-play",
                    "--model", tiny_model_dir, "--fast")
    assert result.exit_code == 1 and "huge.wav: samples reach" in result.output
    assert "far outside [-1, 1]" in result.output
    assert not (tmp_path / "huge_out.wav").exists()


def test_a_save_file_that_cannot_be_made_is_named_not_its_temporary_file(tiny_model_dir, speech, tmp_path,
                                                                          monkeypatch):
    def read_only(path):
        raise codec.live.CodecError(f"{path}: cannot write (Read-only file system)")

    def unlink(self, missing_ok=False):   # on a read-only disk even a missing file's unlink fails
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(codec.live, "create_partial", read_only)
    monkeypatch.setattr("pathlib.Path.unlink", unlink)
    result = invoke("stream", "--input", speech, "--save", tmp_path / "x.pkt", "--no-play", "--fast",
                    "--model", tiny_model_dir)
    assert result.exit_code == 1 and result.output.strip() == f"error: {tmp_path / 'x.pkt'}: cannot write " \
                                                              f"(Read-only file system)", result.output


def test_a_packet_refuses_codes_it_would_send_as_other_codes():
    """Bits beyond the code width were cut: 1024 went out as 0 with a valid CRC; codes of another
    channel count made a packet every receiver dropped as damaged."""
    info = StreamInfo("m", "abcd1234", 16000, 1, 50.0, 1024)
    codes = np.zeros((1, 3, 2), dtype=np.int64)
    for wrong, message in [(codes + 1024, r"range from 1024 to 1024; this stream's codebooks hold 0 to 1023"),
                           (codes - 1, r"range from -1 to -1"),
                           (codes.astype(float), r"are float64: give integer code indices"),
                           (np.zeros((2, 3, 2), dtype=np.int64), r"shape \(2, 3, 2\): .* C = 1 channels"),
                           (np.zeros((3, 2), dtype=np.int64), r"shape \(3, 2\)")]:
        with pytest.raises(ValueError, match=message):
            packet_bytes(0, wrong, info)
    sent = packet_bytes(0, torch.from_numpy(codes + 5), info)   # torch codes are as good as numpy ones
    header = stream_header(info)
    (packet,) = read_packets(header + sent, len(header), info)
    assert np.array_equal(packet.codes, codes + 5)


def test_the_models_input_high_pass_is_applied_as_codec_encode_applies_it(tiny_model_dir, tmp_path):
    import shutil

    from codec.highpass import HighPass

    filtered_model = shutil.copytree(tiny_model_dir, tmp_path / "hp-model")
    config = json.loads((filtered_model / "config.json").read_text())
    (filtered_model / "config.json").write_text(json.dumps({**config, "input_highpass_hz": 80.0}))
    t = np.arange(16000) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 25 * t)).astype(np.float32)[:, None]
    rumbling = write_audio(tmp_path / "rumble.wav", audio, 16000, subtype="FLOAT")
    prefiltered = write_audio(tmp_path / "pre.wav", HighPass(80.0, 16000)(audio).astype(np.float32), 16000,
                              subtype="FLOAT")
    outputs = {}
    for name, source, model in (("hp", rumbling, filtered_model), ("pre", prefiltered, tiny_model_dir),
                                ("plain", rumbling, tiny_model_dir)):
        result = invoke("stream", "--input", source, "--output", tmp_path / f"out-{name}.wav", "--model", model,
                        "--fast")
        assert result.exit_code == 0, result.output
        outputs[name] = sf.read(str(tmp_path / f"out-{name}.wav"))[0]
    assert np.array_equal(outputs["hp"], outputs["pre"]) and not np.array_equal(outputs["hp"], outputs["plain"])


@pytest.mark.parametrize("changes, message", [
    (dict(num_codebooks=130, bitrates_kbps=[1.0, 64.0]),
     "--bitrate 64: 128 codebooks; a stream's packet holds at most 127"),
    (dict(global_groups=256, global_dim=256, global_codebook_size=4),
     "has 256 global codes (model.global_groups); a stream's global-code packet holds at most 255"),
])
def test_a_model_whose_codes_no_packet_can_hold_is_refused_by_name(tmp_path, changes, message):
    import dataclasses

    from codec.models import ConvCodec, save_model
    from codec.train import load_recipe
    from tests.conftest import REPO

    config = dataclasses.replace(load_recipe(REPO / "recipes" / "tiny.yaml").model, name="wide", **changes)
    model_dir = save_model(ConvCodec(config).eval(), tmp_path / "wide")
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    result = invoke("stream", "--input", source, "--output", tmp_path / "s.wav", "--model", model_dir, "--fast",
                    "--bitrate", str(max(config.bitrates_kbps)))
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    assert "internal error" not in result.output and not (tmp_path / "s.wav").exists()


def test_file_ends_are_resampled_over_the_whole_band_and_device_ends_with_less_delay(tmp_path):
    """A file has no delay to save: its resampling keeps 7 kHz (soxr "LQ" takes it 13 dB down at
    48 <-> 16 kHz); beside a microphone or speaker the shorter filter's 17 ms less delay is heard."""
    sink = codec.live.FileSink(tmp_path / "out.wav", 48000, 1)
    try:
        file_quality = codec.live.resampling_quality(sink)
    finally:
        sink.close(keep=False)
    device_quality = codec.live.resampling_quality(codec.live.DeviceSink)

    def level_db(quality: str) -> float:
        resample = codec.live._Resampler(48000, 16000, 1, quality)
        seven_khz = np.sin(2 * np.pi * 7000 * np.arange(48000) / 48000).astype(np.float32)[:, None]
        out = np.concatenate([resample(seven_khz[i:i + 960]) for i in range(0, 48000, 960)])
        return 20 * np.log10(np.sqrt(2) * out[4000:12000].std())

    assert level_db(file_quality) > -1.0 and level_db(device_quality) < -10.0
    assert (codec.live.resampling_delay(48000, 16000, device_quality)
            < codec.live.resampling_delay(48000, 16000, file_quality) - 0.01)


def test_the_reported_rate_of_a_clip_shorter_than_a_frame_counts_the_frame_it_fills(tiny_model_dir, tmp_path):
    """The packets carry whole 20 ms frames: a 5 ms clip's bytes are a frame's, not 4x the rate."""
    def reported_kbps(seconds: float) -> float:
        clip = write_audio(tmp_path / f"{seconds}.wav", tone(seconds, 16000), 16000)
        result = invoke("stream", "--input", clip, "--output", tmp_path / f"{seconds}_out.wav", "--fast",
                        "--model", tiny_model_dir)
        assert result.exit_code == 0, result.output
        return float(result.output.split(" kbps with packet headers")[0].rsplit("(", 1)[1])

    assert reported_kbps(0.005) < 1.3 * reported_kbps(1.0)


def test_a_stream_resamples_its_files_at_full_band_and_its_devices_at_low_delay(tiny_model_dir, speech, tmp_path,
                                                                                monkeypatch):
    """Which quality each resampler of a stream gets: a 44.1 kHz file in and out, then a 48 kHz
    microphone to a speaker and a file."""
    qualities = []

    class Recorded(codec.live._Resampler):
        def __init__(self, from_rate, to_rate, channels, quality=codec.live.FILE_QUALITY):
            qualities.append((from_rate, to_rate, quality))
            super().__init__(from_rate, to_rate, channels, quality)

    monkeypatch.setattr(codec.live, "_Resampler", Recorded)
    result = invoke("stream", "--input", speech, "--output", tmp_path / "out.wav", "--model", tiny_model_dir, "--fast")
    assert result.exit_code == 0, result.output
    assert set(qualities) == {(44100, 16000, "HQ"), (16000, 44100, "HQ")}
    qualities.clear()
    fake = FakeSoundDevice(tone(1.0, 48000), 48000, rates=(48000,), interrupt_after=10)
    monkeypatch.setattr(codec.live, "import_sounddevice", lambda *hint: fake)
    result = invoke("stream", "--output", tmp_path / "recorded.flac", "--play", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert set(qualities) == {(48000, 16000, "LQ"), (16000, 48000, "LQ"), (16000, 48000, "HQ")}
    # the latency shown is the speaker's (20 ms each way in "LQ"), not the file's longer filter
    assert "20 resampling" not in result.output and "40 resampling" in result.output
