"""Streaming equals offline, module by module and for whole models, at any chunking."""

import numpy as np
import pytest
import torch

from codec.models import EscCodec
from codec.modules import CausalConv1d, CausalISTFT, CausalSTFT, ConvNeXtBlock, streaming
from codec.streaming import StreamingDecoder, StreamingEncoder
from tests.test_esc import TINY as TINY_ESC


def chunks(total: int, size: int):
    return [(start, min(start + size, total)) for start in range(0, total, size)]


@pytest.mark.parametrize("module,step", [
    (CausalConv1d(3, 5, 7), 1), (CausalConv1d(3, 5, 4, stride=2), 2), (CausalConv1d(3, 5, 3, dilation=3), 1),
    (ConvNeXtBlock(8, 7), 1),
])
@pytest.mark.parametrize("frames_per_chunk", [1, 2, 7, 50])
def test_layers_stream_like_offline(module, step, frames_per_chunk):
    torch.manual_seed(0)
    x = torch.randn(2, module.in_channels if hasattr(module, "in_channels") else 8, 60 * step)
    with torch.no_grad():
        offline = module(x)
        with streaming(module, 2):
            online = torch.cat([module(x[..., a:b]) for a, b in chunks(x.shape[-1], frames_per_chunk * step)], -1)
    torch.testing.assert_close(online, offline, rtol=0, atol=1e-6)


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 7, 50])
def test_stft_pair_streams_like_offline(frames_per_chunk):
    torch.manual_seed(0)
    stft, istft = CausalSTFT(320, 160), CausalISTFT(320, 160)
    x = torch.randn(3, 1, 160 * 53)
    spec = stft(x)
    offline = istft(spec)
    torch.testing.assert_close(offline[..., :-160], x[..., :-160], rtol=0, atol=1e-5)  # perfect reconstruction
    with streaming(stft, 3), streaming(istft, 3):
        online_spec = torch.cat([stft(x[..., a:b]) for a, b in chunks(x.shape[-1], 160 * frames_per_chunk)], -1)
        online = torch.cat([istft(spec[..., a:b]) for a, b in chunks(spec.shape[-1], frames_per_chunk)]
                           + [istft.flush()], -1)[..., istft.overlap:]
    torch.testing.assert_close(online_spec, spec, rtol=0, atol=1e-6)
    assert online.shape == offline.shape
    # float32 rounding only: the synthesis is a matrix product, summed in another order per chunk size
    torch.testing.assert_close(online, offline, rtol=0, atol=1e-5)


def run_sessions(model, audio: torch.Tensor, block: int, num_codebooks: int = 12):
    encoder = StreamingEncoder(model, num_codebooks, audio.shape[0])
    decoder = StreamingDecoder(model, audio.shape[0])
    codes, out = [], []
    for a, b in chunks(audio.shape[-1], block):
        codes.append(encoder.encode(audio[..., a:b]))
        out.append(decoder.decode(codes[-1]))
    codes.append(encoder.flush())
    out += [decoder.decode(codes[-1]), decoder.flush()]
    return torch.cat(codes, -1), torch.cat(out, -1)


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 7, 50])
def test_sessions_equal_offline(tiny_model, frames_per_chunk):
    torch.manual_seed(1)
    audio = 0.1 * torch.randn(2, 1, 80 * 320 + 77)
    frames = -(-audio.shape[-1] // 320)
    padded = torch.nn.functional.pad(audio, (0, frames * 320 - audio.shape[-1]))
    codes = tiny_model.encode(padded, 12)
    decoded = tiny_model.decode(codes)
    stream_codes, stream_audio = run_sessions(tiny_model, audio, frames_per_chunk * 320)
    assert torch.equal(stream_codes, codes)
    assert stream_audio.shape == decoded.shape
    torch.testing.assert_close(stream_audio, decoded, rtol=0, atol=1e-4)


def test_sessions_accept_partial_frames_and_reset(tiny_model):
    audio = 0.1 * torch.randn(1, 1, 5000)
    first = run_sessions(tiny_model, audio, 123)
    second = run_sessions(tiny_model, audio, 999)
    assert torch.equal(first[0], second[0])
    encoder = StreamingEncoder(tiny_model, 12)
    encoder.encode(audio[..., :100])
    assert encoder.buffered_samples == 100
    encoder.reset()
    assert encoder.buffered_samples == 0
    # a flushed encoder, like a flushed decoder, starts the next stream afresh
    for model in (tiny_model, EscCodec(TINY_ESC).eval()):
        encoder = StreamingEncoder(model, 2)
        streams = [torch.cat([encoder.encode(audio), encoder.flush()], -1) for _ in range(2)]
        assert torch.equal(streams[0], streams[1])


def test_sessions_take_the_loaded_codec_as_the_readme_shows(tiny_model_dir):
    import codec

    model = codec.load_model(tiny_model_dir)
    audio = 0.1 * torch.randn(1, 1, 3000)
    codes, decoded = run_sessions(model, audio, 640)
    assert torch.equal(codes, run_sessions(model.network, audio, 640)[0]) and decoded.shape[-1] >= 3000
    assert model.latency == model.network.latency > 0   # what the streamed output lags by, in samples
    from codec.errors import CodecError

    with pytest.raises(CodecError, match="num_codebooks 99: this model has 1 to"):
        StreamingEncoder(model, 99)
    with pytest.raises(CodecError, match="takes a model from codec.load_model, not str"):
        StreamingDecoder("conv-16k")
    for value in (12.0, "12", True, 0):
        with pytest.raises(CodecError, match=f"num_codebooks {value!r}: must be a whole number >= 1"):
            StreamingEncoder(model, value)
    for value in (0, -1, 1.5):
        with pytest.raises(CodecError, match="batch_size .*: must be a whole number >= 1"):
            StreamingDecoder(model, batch_size=value)
    with pytest.raises(CodecError, match="frames 2.5: must be a whole number >= 0"):
        StreamingDecoder(model).conceal(2.5)
    assert StreamingEncoder(model, np.int64(12)).num_codebooks == 12


def test_output_keeps_up_with_the_declared_latency(tiny_model):
    """Fed 20 ms blocks, the decoder has released every sample older than the latency."""
    encoder, decoder = StreamingEncoder(tiny_model, 6), StreamingDecoder(tiny_model)
    released = 0
    block = tiny_model.frame_size
    for index in range(1, 30):
        released += decoder.decode(encoder.encode(0.1 * torch.randn(1, 1, block))).shape[-1]
        now = index * block
        assert released == max(0, now + block - tiny_model.latency)  # nothing older than the latency waits
        assert released >= now - tiny_model.latency


def test_model_latency_is_30_ms(tiny_model):
    assert tiny_model.latency / tiny_model.sample_rate * 1000 == pytest.approx(30.0)
    assert np.isclose(tiny_model.frame_rate, 50.0)


def test_sessions_name_what_is_wrong_with_a_chunk(tiny_model):
    from codec.errors import CodecError

    encoder, decoder = StreamingEncoder(tiny_model, 2), StreamingDecoder(tiny_model)
    bad_audio = [
        (torch.zeros(320), r"audio has shape \(320,\); this session takes \[B, 1, n\]"),
        (torch.zeros(2, 1, 320), r"shape \(2, 1, 320\); .* B = batch_size = 1"),
        (torch.zeros(1, 2, 320), r"2 channels in dimension 1"),
        (torch.zeros(1, 1, 320, dtype=torch.int16), r"audio is int16: give float samples in \[-1, 1\]"),
        (torch.full((1, 1, 320), float("nan")), r"NaN or infinite"),
        ([0.0] * 320, r"audio must be a torch tensor \(or numpy array\), not list"),
    ]
    for audio, message in bad_audio:
        with pytest.raises(CodecError, match=message):
            encoder.encode(audio)
    codes = encoder.encode(np.zeros((1, 1, 3200), np.float32))   # numpy is taken too
    assert codes.shape == (1, 2, 3200 // tiny_model.frame_size)
    bad_codes = [
        (codes.float(), r"codes are float32: give integer code indices"),
        (codes[0], r"codes has shape \(2, 10\)"),
        (torch.full((1, 30, 2), 0), r"codes have 30 codebooks; this model has 1 to 24"),
        (torch.full((1, 2, 2), 1024), r"codes range from 1024 to 1024; this model's codebooks hold codes 0 to 1023"),
        (torch.full((1, 2, 2), -1), r"codes range from -1 to -1"),
        (torch.full((1, 2, 2), -100, dtype=torch.int8), r"codes range from -100 to -100"),
        (np.full((1, 2, 2), 2**64 - 1, np.uint64), r"codes hold 18446744073709551615, more than an int64 holds"),
        (np.full((1, 2, 2), None, object), r"codes is a numpy array of object: give numbers"),
    ]
    for bad, message in bad_codes:
        with pytest.raises(CodecError, match=message):
            decoder.decode(bad)
    assert decoder.decode(codes.numpy().astype(np.int16)).shape[-1] > 0
    assert decoder.decode(codes.numpy().astype(np.uint16)).shape[-1] > 0   # 10-bit codes held in uint16
    small = torch.full((1, 2, 2), 200)   # codes below 256 in uint8 (not compared with 1024 wrapped to 0)
    for held in (small.to(torch.uint8), small.to(torch.uint64), small.numpy().astype(np.uint64)):
        assert decoder.decode(held).shape[-1] > 0
    reversed_chunk = np.zeros((1, 1, 3200), np.float32)[..., ::-1]   # negative strides
    assert encoder.encode(reversed_chunk).shape == (1, 2, 10)
    for fade in (float("nan"), -1, 2, "a"):
        with pytest.raises(CodecError, match=r"fade must be a number from 0 .* to 1"):
            decoder.conceal(2, fade=fade)
    assert decoder.conceal(1, fade=np.float32(0.5)).shape[-1] > 0
    with pytest.raises(CodecError, match=r"num_codebooks 99: this model has 1 to 24 codebooks"):
        encoder.num_codebooks = 99
    encoder.num_codebooks = 3   # the bitrate may change between calls
    assert encoder.encode(np.zeros((1, 1, 3200), np.float32)).shape == (1, 3, 10)


def test_session_outputs_are_ordinary_tensors(tiny_model):
    """A caller may scale the audio in place or take gradients through it: not inference tensors."""
    encoder, decoder = StreamingEncoder(tiny_model, 2), StreamingDecoder(tiny_model)
    codes = encoder.encode(torch.zeros(1, 1, 3200))
    codes[0, 0, 0] = 3
    audio = torch.cat([decoder.decode(codes), decoder.conceal(2), decoder.flush()], dim=-1)
    assert not any(t.is_inference() for t in (codes, audio, encoder.flush()))
    audio *= 0.5


def test_one_model_coded_from_two_threads_gives_each_its_own_codes(tiny_model):
    import threading

    from codec.coding import decode_audio, encode_audio

    rng = np.random.default_rng(3)
    signals = [0.1 * rng.standard_normal((16000, 1)) for _ in range(2)]
    expected = [encode_audio(tiny_model, x, 16000, 6.0).codes for x in signals]
    decoded = [decode_audio(tiny_model, encode_audio(tiny_model, x, 16000, 6.0))[0] for x in signals]
    wrong = []

    def work(index):
        for _ in range(4):   # the sessions swap their state into the shared modules: calls take turns
            codes_file = encode_audio(tiny_model, signals[index], 16000, 6.0)
            if not np.array_equal(codes_file.codes, expected[index]):
                wrong.append((index, "codes"))
            elif not np.allclose(decode_audio(tiny_model, codes_file)[0], decoded[index], atol=1e-5):
                wrong.append((index, "audio"))

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def test_sessions_take_big_endian_arrays_as_the_python_api_does(tiny_model):
    # (a big-endian file's samples as numpy reads them: torch takes only the native byte order)
    audio = 0.1 * np.random.default_rng(4).standard_normal((1, 1, 3200)).astype(np.float32)
    codes = StreamingEncoder(tiny_model, 6).encode(audio)
    assert torch.equal(StreamingEncoder(tiny_model, 6).encode(audio.astype(">f4")), codes)
    decoded = StreamingDecoder(tiny_model).decode(codes)
    assert torch.equal(StreamingDecoder(tiny_model).decode(codes.numpy().astype(">i8")), decoded)
