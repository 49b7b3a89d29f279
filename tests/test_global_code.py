"""Time-invariant global codes (TiCodec): stationarity, streaming == offline, the bitstream's
global-code section, file coding, and training with the consistency loss."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from codec.bitstream import BitstreamError, CodesFile, CodesMetadata, from_bytes, read_global_codes, to_bytes
from codec.coding import decode_audio, encode_audio
from codec.models import ConvCodec, load_model, save_model
from codec.streaming import StreamingDecoder, StreamingEncoder
from codec.train import load_recipe, train
from tests.conftest import REPO, run_cli, tone, write_audio


@pytest.fixture(scope="module")
def global_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = dataclasses.replace(load_recipe(REPO / "recipes" / "tiny.yaml").model, name="tiny-global",
                                 global_groups=2, global_dim=8, global_codebook_size=64, global_seconds=0.5)
    return save_model(ConvCodec(config).eval(), tmp_path_factory.mktemp("models") / "tiny-global")


@pytest.fixture(scope="module")
def global_model(global_model_dir):
    return load_model(global_model_dir)


def test_two_halves_of_a_stationary_signal_get_the_same_global_code(global_model):
    latent = global_model.encode_latent(torch.from_numpy(tone(1.0, 16000, 300.0).reshape(-1)).float()[None, None])
    first, second = latent[..., 5:25], latent[..., 25:45]       # past the causal start-up frames
    assert torch.equal(global_model.global_code.encode(first), global_model.global_code.encode(second))


@pytest.mark.parametrize("chunk", [1, 320 * 3 + 17, 16000])
def test_streaming_with_the_global_code_equals_offline(global_model, chunk):
    torch.manual_seed(1)
    audio = 0.1 * torch.randn(2, 1, 320 * 60)                    # 1.2 s: the global code needs 0.5 s
    expected_global = global_model.encode_global(global_model.encode_latent(audio))
    expected = global_model.encode(audio, 6)
    encoder = StreamingEncoder(global_model, 6, batch_size=2)
    pieces = [encoder.encode(audio[..., start:start + chunk]) for start in range(0, audio.shape[-1], chunk)]
    pieces.append(encoder.flush())
    assert torch.equal(encoder.global_codes, expected_global)
    assert torch.equal(torch.cat(pieces, dim=-1), expected)
    decoder = StreamingDecoder(global_model, batch_size=2, global_codes=encoder.global_codes)
    decoded = torch.cat([decoder.decode(expected), decoder.flush()], dim=-1)
    offline = global_model.decode(expected, expected_global)
    torch.testing.assert_close(decoded[..., :offline.shape[-1]], offline, atol=1e-4, rtol=0)


def test_the_decoder_film_starts_as_identity_and_streams_like_offline(global_model):
    """``global_film``: zero-initialised, it leaves the decoder as it was; trained (here: random
    weights), different global codes change the audio, and streaming still equals offline."""
    torch.manual_seed(2)
    film = ConvCodec(dataclasses.replace(global_model.config, global_film=True)).eval()
    film.load_state_dict(global_model.state_dict(), strict=False)
    codes, global_codes = torch.randint(0, 1024, (2, 6, 30)), torch.randint(0, 64, (2, 2))
    torch.testing.assert_close(film.decode(codes, global_codes), global_model.decode(codes, global_codes))
    with torch.no_grad():
        film.global_film.weight.normal_(std=0.3)
    other = global_codes.flip(0)
    assert not torch.allclose(film.decode(codes, global_codes), film.decode(codes, other), atol=1e-3)
    decoder = StreamingDecoder(film, batch_size=2, global_codes=global_codes)
    pieces = [decoder.decode(codes[..., i:i + 7]) for i in range(0, 30, 7)] + [decoder.flush()]
    offline = film.decode(codes, global_codes)
    torch.testing.assert_close(torch.cat(pieces, dim=-1)[..., :offline.shape[-1]], offline, atol=1e-4, rtol=0)


def test_decoding_without_the_global_code_is_refused(global_model):
    with pytest.raises(ValueError, match=r"needs global codes \[1, 2\]: encode_global\(encode_latent\(wav\)\) gives"):
        global_model.decode(torch.zeros(1, 3, 5, dtype=torch.long))


@pytest.mark.parametrize("global_codes, error, message", [
    (torch.tensor([[0, 64]]), ValueError, r"global codes range from 0 to 64; .* hold codes 0 to 63"),
    (torch.tensor([[-1, 3]]), ValueError, "global codes range from -1 to 3"),
    (torch.tensor([[0, 1, 2]]), ValueError, r"shape \(1, 3\): tiny-global needs global codes \[1, 2\]"),
    (torch.tensor([[0.0, 1.0]]), TypeError, "global_codes must be an integer torch tensor"),
    ([[0, 1]], TypeError, "not list"),
])
def test_bad_global_codes_are_refused_naming_the_problem(global_model, global_codes, error, message):
    codes = torch.zeros(1, 3, 5, dtype=torch.long)
    with pytest.raises(error, match=message):
        global_model.decode(codes, global_codes)
    with pytest.raises(error, match=message):
        global_model.encode(torch.zeros(1, 1, global_model.frame_size), 3, global_codes)


def test_global_codes_of_any_integer_type_decode_alike(global_model):
    codes, global_codes = torch.zeros(1, 3, 5, dtype=torch.long), torch.tensor([[7, 63]])
    expected = global_model.decode(codes, global_codes)
    assert torch.equal(global_model.decode(codes, global_codes.to(torch.uint8)), expected)
    assert torch.equal(global_model.decode(codes, global_codes.to(torch.int16)), expected)


@pytest.mark.parametrize("seconds", [0.0, 0.2, 1.3])   # none, shorter than global_seconds, longer
def test_files_round_trip_with_the_global_code(global_model, seconds):
    audio = tone(seconds, 16000, channels=2) if seconds else np.zeros((0, 2))
    codes_file = encode_audio(global_model, audio, 16000, 3.0)
    assert codes_file.global_codes.shape == (2, 2) and codes_file.metadata.global_codebooks == 2
    parsed = from_bytes(to_bytes(codes_file))
    np.testing.assert_array_equal(parsed.global_codes, codes_file.global_codes)
    decoded, rate = decode_audio(global_model, parsed)
    assert decoded.shape == (len(audio), 2) and rate == 16000
    if seconds:   # Codes without the global codes their metadata says: named as missing (was "of shape ()")
        from codec.bitstream import codes_problem

        missing = dataclasses.replace(codes_file, global_codes=None)
        assert codes_problem(missing) == "global codes are missing: the metadata says (2, 2)"


@pytest.mark.parametrize("samples", [4000, 7999, 8000, 8010, 22050])   # about the 0.5 s global window
def test_a_file_has_the_frames_its_samples_need_and_no_more(global_model, samples):
    """The frames held back for the global code once made the encoder pad up to twice as many."""
    codes_file = encode_audio(global_model, 0.1 * tone(samples / 16000, 16000), 16000, 3.0)
    assert codes_file.codes.shape[-1] == -(-samples // global_model.frame_size)


def global_file(channels=2, groups=3):
    rng = np.random.default_rng(0)
    meta = CodesMetadata("tiny-global", "0123abcd", 16000, channels, 3200, 50, 4, 1024, 10,
                         global_codebooks=groups, global_codebook_size=64)
    return CodesFile(meta, rng.integers(0, 1024, (channels, 4, 10)), rng.integers(0, 64, (channels, groups)))


def test_the_global_section_is_read_back_and_covered_by_the_crc():
    original = global_file()
    data = to_bytes(original)
    assert data[5] == 2                                           # flag bit 1: a global-code section
    np.testing.assert_array_equal(read_global_codes(data), original.global_codes)
    length = int.from_bytes(data[6:8], "little")
    section = 8 + length                                          # 2 x 3 codes of 6 bits: 5 bytes
    damaged = data[:section] + bytes([data[section] ^ 0x10]) + data[section + 1:]
    with pytest.raises(BitstreamError, match="CRC mismatch"):
        from_bytes(damaged)
    with pytest.raises(BitstreamError, match="truncated in the global-code section"):
        from_bytes(data[:section + 2])
    flagless = data[:5] + b"\x00" + data[6:]
    with pytest.raises(BitstreamError, match="global-code flag"):
        from_bytes(flagless)


def test_cli_round_trip_and_info_show_the_global_code(global_model_dir, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(1.0, 22050), 22050)
    assert run_cli("encode", source, tmp_path / "a.codes", "--model", global_model_dir, "-b", "3").exit_code == 0
    info = run_cli("info", tmp_path / "a.codes", "--json")
    values = json.loads(info.stdout)
    assert values["global_codebooks"] == 2 and len(values["global_codes"]) == 1
    assert run_cli("decode", tmp_path / "a.codes", tmp_path / "out.wav", "--model", global_model_dir).exit_code == 0
    export = run_cli("export", global_model_dir, "--out", tmp_path / "onnx")
    assert export.exit_code == 1 and "global code" in export.output
    stream = run_cli("stream", "--input", source, "--output", tmp_path / "s.wav", "--model", global_model_dir, "--fast",
                     "--runtime", "onnx")
    assert stream.exit_code == 1 and "global code" in stream.output and "--runtime torch" in stream.output


def _saved_packets(path):
    from codec.packets import read_packets, read_stream_header

    data = path.read_bytes()
    info, offset = read_stream_header(data)
    return info, list(read_packets(data, offset, info))


@pytest.mark.parametrize("refresh", [None, 0.3])
def test_streaming_sends_the_global_code_first_and_on_refresh(global_model, global_model_dir, tmp_path, refresh):
    """``codec stream`` with a TiCodec model: a global-code packet precedes the first frames (the
    code of the first global_seconds, as offline coding computes it), is resent every
    --global-refresh seconds, and the saved stream decodes to the input's exact length."""
    import soundfile as sf

    audio = tone(1.3, 16000, 220.0) * np.linspace(0.2, 1.0, 20800)[:, None]
    source = write_audio(tmp_path / "in.wav", audio, 16000)
    options = [] if refresh is None else ["--global-refresh", str(refresh)]
    result = run_cli("stream", "--input", source, "--output", tmp_path / "s.wav", "--save", tmp_path / "s.cods",
                     "--model", global_model_dir, "--fast", "-b", "3", *options)
    assert result.exit_code == 0, result.output
    assert "500 global code" in result.output.replace("\n", " ")   # global_seconds = 0.5 s of latency
    assert sf.info(str(tmp_path / "s.wav")).frames == 20800
    info, packets = _saved_packets(tmp_path / "s.cods")
    assert info.global_codebook_size == 64
    global_packets = [i for i, p in enumerate(packets) if p.global_codes is not None]
    assert global_packets[0] == 0
    from codec.audio import load_audio

    offline = encode_audio(global_model, load_audio(source)[0], 16000, 3.0)   # the file's 16-bit samples
    np.testing.assert_array_equal(packets[0].global_codes, offline.global_codes)
    frames = np.concatenate([p.codes for p in packets if p.codes is not None], axis=-1)
    assert frames.shape == offline.codes.shape
    if refresh is None:   # streaming codes == offline codes
        assert global_packets == [0]
        np.testing.assert_array_equal(frames, offline.codes)
    else:
        assert len(global_packets) >= 3                         # 1.3 s, refreshed every 0.3 s
    decoded = run_cli("decode", tmp_path / "s.cods", tmp_path / "d.wav", "--model", global_model_dir)
    assert decoded.exit_code == 0, decoded.output
    assert sf.info(str(tmp_path / "d.wav")).frames == 20800


def test_global_code_packets_round_trip_and_are_checked():
    from codec.packets import StreamInfo, global_packet, packet_bytes, read_packets

    info = StreamInfo("m", "0123abcd", 16000, 2, 50, 1024, global_codebook_size=64)
    codes = np.array([[3, 63], [0, 17]])
    data = global_packet(5, codes, info) + packet_bytes(6, np.zeros((2, 3, 1), dtype=np.int64), info)
    first, second = read_packets(data, 0, info)
    assert first.sequence == 5 and first.codes is None and not first.is_end
    np.testing.assert_array_equal(first.global_codes, codes)
    assert second.codes.shape == (2, 3, 1)
    damaged = bytearray(data)
    damaged[6] ^= 0x10
    assert [p.sequence for p in read_packets(bytes(damaged), 0, info)] == [6]   # skipped, not misread
    plain = StreamInfo("m", "0123abcd", 16000, 2, 50, 1024)          # a stream without global codes
    assert [p.sequence for p in read_packets(data, 0, plain)] == [6]


def test_training_with_a_global_code_logs_the_consistency_loss(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(3):
        write_audio(folder / f"{i}.wav", tone(1.0, 16000, 150.0 + 50 * i), 16000)
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", [
        f"data.train_dir={folder}", f"run.out_dir={tmp_path / 'run'}", "run.max_steps=4", "run.log_every=2",
        "model.global_groups=2", "model.global_dim=8", "model.global_codebook_size=64"])
    train(recipe)
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert all(np.isfinite(r["consistency"]) for r in log)
    assert load_model(tmp_path / "run" / "model").global_code is not None

    # the decoder FiLM added to a trained global-code model: a new part that learns
    train(dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, global_film=True),
                              run=dataclasses.replace(recipe.run, out_dir=str(tmp_path / "film"), max_steps=2,
                                                      init_from=str(tmp_path / "run" / "model"))))
    film = load_model(tmp_path / "film" / "model").global_film
    assert film is not None and film.weight.abs().sum() > 0


def test_a_lost_global_code_packet_is_reported(global_model_dir, tmp_path):
    """A saved stream whose first global-code packet is damaged still decodes (concealed until the
    refresh), the warning says how much was concealed for lack of it, and the lost packet, which
    held no frames, shifts nothing: after the refresh the audio is the intact stream's."""
    import soundfile as sf

    source = write_audio(tmp_path / "in.wav", tone(1.5, 16000), 16000)
    assert run_cli("stream", "--input", source, "--output", tmp_path / "s.wav", "--save", tmp_path / "s.cods",
                   "--model", global_model_dir, "--fast", "--global-refresh", "0.5").exit_code == 0
    assert run_cli("decode", tmp_path / "s.cods", tmp_path / "intact.wav", "--model", global_model_dir).exit_code == 0
    from codec.packets import read_stream_header

    data = bytearray((tmp_path / "s.cods").read_bytes())
    _, offset = read_stream_header(bytes(data))
    data[offset + 6] ^= 0x01                       # inside the first packet: the global code
    (tmp_path / "d.cods").write_bytes(bytes(data))
    result = run_cli("decode", tmp_path / "d.cods", tmp_path / "d.wav", "--model", global_model_dir)
    assert result.exit_code == 0 and "global code's packet was lost" in result.output
    intact, damaged = sf.read(str(tmp_path / "intact.wav"))[0], sf.read(str(tmp_path / "d.wav"))[0]
    assert len(damaged) == len(intact) == 24000
    np.testing.assert_allclose(damaged[-4000:], intact[-4000:], atol=1e-3)


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_bad_global_refresh_values_are_refused(global_model_dir, tmp_path, value):
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    result = run_cli("stream", "--input", source, "--output", tmp_path / "s.wav", "--model", global_model_dir,
                     "--fast", "--global-refresh", value)
    assert result.exit_code == 1 and "must be a positive number of seconds" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_global_refresh_for_a_model_without_a_global_code_says_so(tiny_model_dir, tmp_path):
    source = write_audio(tmp_path / "in.wav", tone(0.3, 16000), 16000)
    result = run_cli("stream", "--input", source, "--output", tmp_path / "s.wav", "--model", tiny_model_dir,
                     "--fast", "--global-refresh", "1")
    assert result.exit_code == 1 and "--global-refresh: model tiny-16k has no time-invariant global code" in \
        " ".join(result.output.split())


def test_codes_and_streams_whose_global_code_does_not_fit_the_model_are_refused(global_model_dir, tiny_model_dir,
                                                                                 tmp_path):
    from codec.packets import end_packet, global_packet, packet_bytes, stream_header

    source = write_audio(tmp_path / "in.wav", tone(1.0, 16000), 16000)
    assert run_cli("encode", source, tmp_path / "g.codes", "--model", global_model_dir).exit_code == 0
    assert run_cli("encode", source, tmp_path / "p.codes", "--model", tiny_model_dir).exit_code == 0
    with_global = from_bytes((tmp_path / "g.codes").read_bytes())
    plain = from_bytes((tmp_path / "p.codes").read_bytes())
    added = CodesFile(dataclasses.replace(plain.metadata, global_codebooks=2, global_codebook_size=64), plain.codes,
                      with_global.global_codes)
    dropped = CodesFile(dataclasses.replace(with_global.metadata, global_codebooks=None, global_codebook_size=None),
                        with_global.codes)
    for codes, model, message in [
            (added, tiny_model_dir, "the codes have a time-invariant global code of 2 codebooks of 64; model "
                                    "'tiny-16k' has no time-invariant global code"),
            (dropped, global_model_dir, "the codes have no time-invariant global code; model 'tiny-global' has a "
                                        "time-invariant global code of 2 codebooks of 64")]:
        (tmp_path / "x.codes").write_bytes(to_bytes(codes))
        result = run_cli("decode", tmp_path / "x.codes", tmp_path / "x.wav", "--model", model)
        assert result.exit_code == 1 and message in result.output, result.output
    # a saved stream whose global-code packet holds 3 codebooks for a model of 2
    assert run_cli("stream", "--input", source, "--save", tmp_path / "s.cods", "--no-play",
                   "--model", global_model_dir, "--fast").exit_code == 0
    info, packets = _saved_packets(tmp_path / "s.cods")
    (tmp_path / "f.cods").write_bytes(
        stream_header(info) + global_packet(0, np.zeros((1, 3), dtype=np.int64), info)
        + b"".join(packet_bytes(p.sequence, p.codes, info) for p in packets[1:-1])
        + end_packet(packets[-1].sequence, packets[-1].total_samples))
    result = run_cli("decode", tmp_path / "f.cods", tmp_path / "f.wav", "--model", global_model_dir)
    assert result.exit_code == 1 and "packet 0: a global code of 3 codebooks; model 'tiny-global' has 2" \
        in result.output, result.output
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "f.wav").exists()


def test_info_gives_a_cut_streams_length_as_decoding_does_when_the_global_code_was_lost(global_model_dir, tmp_path):
    """The lost first packet of a TiCodec stream is its global code's, which holds no frames."""
    import soundfile as sf

    from codec.packets import packet_bytes, stream_header

    source = write_audio(tmp_path / "in.wav", tone(1.0, 16000), 16000)
    assert run_cli("stream", "--input", source, "--save", tmp_path / "s.cods", "--no-play",
                   "--model", global_model_dir, "--fast").exit_code == 0
    info, packets = _saved_packets(tmp_path / "s.cods")
    # the global code's packet lost, and the stream cut off before its end packet
    (tmp_path / "cut.cods").write_bytes(stream_header(info) + b"".join(packet_bytes(p.sequence, p.codes, info)
                                                                       for p in packets[1:-1]))
    values = json.loads(run_cli("info", tmp_path / "cut.cods", "--json").stdout)
    assert values["lost_packets"] == 1 and values["ended"] is False
    assert run_cli("decode", tmp_path / "cut.cods", tmp_path / "cut.wav", "--model", global_model_dir).exit_code == 0
    assert values["duration_s"] == pytest.approx(sf.info(str(tmp_path / "cut.wav")).duration, abs=0.002)
