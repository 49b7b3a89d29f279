"""Entropy coding: lossless, deterministic across processes and thread counts, and safe."""

import json
import math
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from codec.bitstream import BitstreamError, CodesFile, CodesMetadata, from_bytes, read_metadata, to_bytes
from codec.entropy import EntropyCoder, EntropyModel, EntropyModelConfig, load_entropy_model, save_entropy_model
from codec.entropy.coding import quantized_probabilities
from codec.entropy.predictor import EntropyWeights, ExactLinear, IncrementalPredictor

CONFIG = EntropyModelConfig(name="entropy-tiny", codec="tiny-16k", dim=32, layers=1, heads=2, context_frames=16,
                            depth_hidden=32)


@pytest.fixture(scope="module")
def entropy_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = EntropyModel(CONFIG)
    with torch.no_grad():
        model.out_bias[:, :16] += 4.0   # a skewed, learnable-looking distribution: small codes are likely
    directory = tmp_path_factory.mktemp("entropy")
    save_entropy_model(model, directory)
    return directory


def skewed_codes(channels=1, codebooks=6, frames=180, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((channels, codebooks, frames)) < 0.8, rng.integers(0, 16, (channels, codebooks, frames)),
                    rng.integers(0, 1024, (channels, codebooks, frames)))


def codes_file(codes):
    channels, codebooks, frames = codes.shape
    return CodesFile(CodesMetadata("tiny-16k", "0123abcd", 16000, channels, frames * 320, 50, codebooks, 1024, frames),
                     codes)


def test_code_by_code_prediction_equals_the_training_pass():
    """The coder's incremental predictions (frame by frame, codebook by codebook, a sliding
    key/value window, 8-bit integer products) are the teacher-forced logits the model trains on,
    up to the integer rounding."""
    torch.manual_seed(1)
    model = EntropyModel(CONFIG).eval()
    codes = torch.from_numpy(skewed_codes(channels=2, codebooks=4, frames=21))   # past the 16-frame window
    with torch.no_grad():
        expected = model(codes)                              # [B, F, K, V]
    predictor = IncrementalPredictor(EntropyWeights(model), 2, 4)
    for t in range(21):
        for k in range(4):
            np.testing.assert_allclose(predictor.next_logits(), expected[:, t, k].double().numpy(), atol=0.05)
            predictor.push(codes[:, k, t].numpy())


@pytest.mark.parametrize("inputs", [192, 768])
def test_integer_products_are_exact_in_any_order(inputs):
    """ExactLinear's float32 products are exact integers, so any BLAS, CPU or summation order
    gives the same bits: here, forward vs reversed order and int64 arithmetic agree exactly."""
    rng = np.random.default_rng(inputs)
    layer = ExactLinear(rng.normal(size=(inputs, 64)) * rng.random(64), np.zeros(64))
    x = rng.normal(size=(3, inputs)) * np.where(rng.random(inputs) < 0.02, 50.0, 1.0)   # with outliers
    integers, _ = layer.integer_input(x)
    assert np.abs(integers).max() == layer.levels and np.abs(layer.weight).max() == 127
    exact = integers.astype(np.int64) @ layer.weight.astype(np.int64)
    assert np.abs(exact).max() < 2 ** 24
    np.testing.assert_array_equal(integers @ layer.weight, exact)
    np.testing.assert_array_equal(integers[:, ::-1] @ layer.weight[::-1], exact)
    np.testing.assert_allclose(layer(x), x @ (layer.weight * layer.scale), rtol=0.05, atol=0.05 * np.abs(x).max())


def test_lossless_and_smaller(entropy_dir):
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    original = codes_file(skewed_codes(channels=2))
    plain, coded = to_bytes(original), to_bytes(original, coder)
    assert read_metadata(coded).entropy_model == "entropy-tiny"
    np.testing.assert_array_equal(from_bytes(coded, coder).codes, original.codes)
    assert len(coded) < 0.8 * len(plain)


def test_several_chunks_and_empty(entropy_dir, monkeypatch):
    import codec.bitstream

    monkeypatch.setattr(codec.bitstream, "FRAMES_PER_CHUNK", 50)
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    for frames in (0, 1, 123):
        original = codes_file(skewed_codes(frames=frames))
        np.testing.assert_array_equal(from_bytes(to_bytes(original, coder), coder).codes, original.codes)


def test_codes_bytes_leave_the_same_overhead_with_or_without_entropy_coding(entropy_dir, monkeypatch):
    # codec eval's overhead_kbps: the file minus its codes (was 0 when range coding saved more than the header)
    import codec.bitstream
    from codec.bitstream import codes_bytes

    monkeypatch.setattr(codec.bitstream, "FRAMES_PER_CHUNK", 50)
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    original = codes_file(skewed_codes(frames=123))   # 3 chunks
    plain, coded = to_bytes(original), to_bytes(original, coder)
    assert codes_bytes(plain) == sum(math.ceil(frames * 6 * 10 / 8) for frames in (50, 50, 23))
    assert 0 < codes_bytes(coded) < codes_bytes(plain)
    longer_metadata = int.from_bytes(coded[6:8], "little") - int.from_bytes(plain[6:8], "little")   # entropy_*
    assert longer_metadata > 0   # besides it, each chunk has a length and a second CRC
    assert (len(coded) - codes_bytes(coded)) - (len(plain) - codes_bytes(plain)) == longer_metadata + 3 * 2 * 4


def test_a_decoded_entropy_file_saves_as_a_plain_readable_file(entropy_dir):
    """Codes read from an entropy-coded file and written without a coder make a plain file (the
    entropy fields describe a payload, not the codes)."""
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    parsed = from_bytes(to_bytes(codes_file(skewed_codes()), coder), coder)
    assert parsed.metadata.entropy_coded
    again = from_bytes(to_bytes(parsed))
    assert not again.metadata.entropy_coded
    np.testing.assert_array_equal(again.codes, parsed.codes)


def test_broken_or_missing_entropy_files(entropy_dir, tmp_path):
    import shutil

    from codec.errors import CodecError

    folder = tmp_path / "m"
    shutil.copytree(entropy_dir, folder)
    data = (folder / "entropy.safetensors").read_bytes()
    (folder / "entropy.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CodecError, match="cannot load the entropy model.*remove"):
        load_entropy_model(folder)
    # half an entropy model (one file copied): named, not a codec silently writing plain files
    (folder / "entropy.safetensors").unlink()
    with pytest.raises(CodecError, match="has entropy_config.json but not entropy.safetensors: .* copy "
                                         "entropy.safetensors there too, or remove entropy_config.json"):
        load_entropy_model(folder)
    (folder / "entropy.safetensors").write_bytes(data)
    (folder / "entropy_config.json").unlink()
    with pytest.raises(CodecError, match="has entropy.safetensors but not entropy_config.json"):
        load_entropy_model(folder)
    (folder / "entropy.safetensors").unlink()
    assert load_entropy_model(folder) is None          # neither file: a codec without one


def test_needs_the_entropy_model(entropy_dir):
    coded = to_bytes(codes_file(skewed_codes()), EntropyCoder(load_entropy_model(entropy_dir)))
    with pytest.raises(BitstreamError, match="the decoding model does not have: decode it with a folder of model "
                                             "'tiny-16k' that holds"):
        from_bytes(coded)


def test_perturbed_model_is_caught_by_the_crc(entropy_dir):
    model = load_entropy_model(entropy_dir)
    coded = to_bytes(codes_file(skewed_codes()), EntropyCoder(model))
    with torch.no_grad():
        model.out_bias += 0.3 * torch.randn_like(model.out_bias)   # same name and hash, other numbers
    with pytest.raises(BitstreamError, match="fail their CRC|cannot be entropy-decoded"):
        from_bytes(coded, EntropyCoder(model))


def test_a_near_impossible_symbol_still_codes(entropy_dir):
    model = load_entropy_model(entropy_dir)
    with torch.no_grad():
        model.out_bias[:, 1023] = -60.0
    coder = EntropyCoder(model)
    codes = np.full((1, 3, 20), 1023)
    assert quantized_probabilities(np.array([[0.0] * 1023 + [-60.0]])).min() > 0
    np.testing.assert_array_equal(from_bytes(to_bytes(codes_file(codes), coder), coder).codes, codes)


def test_a_payload_far_shorter_than_its_codes_fails_at_once(entropy_dir):
    """A crafted header asking 64 channels x 1500 frames of an 8-byte payload must not decode for minutes."""
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    payload = coder.encode_chunk(skewed_codes(frames=4))
    started = time.monotonic()
    with pytest.raises(ValueError, match="ends before its codes"):
        coder.decode_chunk(payload, 64, 6, 1500)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("channels", [64, 1024])
def test_many_channels_decode(entropy_dir, channels):
    """A step decodes one code of every channel: its bits before the last word is read are not
    the "past the end" that finds a payload too short (64 channels of speech failed)."""
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    codes = skewed_codes(channels=channels, frames=3)
    np.testing.assert_array_equal(coder.decode_chunk(coder.encode_chunk(codes), channels, 6, 3), codes)


def test_highly_predictable_codes_still_decode_past_the_last_word(entropy_dir):
    model = load_entropy_model(entropy_dir)
    with torch.no_grad():
        model.out_bias[:, 0] += 30.0   # code 0 all but certain: hundreds of codes in the coder's last state bits
    coder = EntropyCoder(model)
    codes = np.zeros((2, 6, 400), dtype=np.int64)
    np.testing.assert_array_equal(from_bytes(to_bytes(codes_file(codes), coder), coder).codes, codes)


_PRODUCT_HASH = ("import hashlib, numpy as np\n"
                 "rng = np.random.default_rng(0)\n"
                 "a, b = rng.standard_normal((1, 768)), rng.standard_normal((768, 1024))\n"
                 "print(hashlib.md5((a.astype(np.float32) @ b.astype(np.float32)).tobytes()).hexdigest())\n")


def _decodes_in_another_process(entropy_dir, tmp_path, env=None, prelude: str = "") -> None:
    """Entropy-code a file here; decode it in a fresh Python process (``env``, ``prelude`` code
    run first) and check the codes come back exactly."""
    coder = EntropyCoder(load_entropy_model(entropy_dir))
    original = codes_file(skewed_codes(channels=2, frames=100))
    (tmp_path / "x.codes").write_bytes(to_bytes(original, coder))
    np.save(tmp_path / "expected.npy", original.codes)
    script = (
        prelude +
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from codec.bitstream import from_bytes\n"
        "from codec.entropy import EntropyCoder, load_entropy_model\n"
        f"coder = EntropyCoder(load_entropy_model(Path({str(entropy_dir)!r})))\n"
        f"codes = from_bytes(Path({str(tmp_path / 'x.codes')!r}).read_bytes(), coder).codes\n"
        f"assert (codes == np.load({str(tmp_path / 'expected.npy')!r})).all()\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@pytest.mark.parametrize("core", ["Sandybridge", "Nehalem"])
def test_decodes_with_another_cpus_blas_kernels(entropy_dir, tmp_path, core):
    """Files decode on a machine whose BLAS sums in another order: here OpenBLAS is made to use
    another CPU generation's kernels (OPENBLAS_CORETYPE), which changes plain float32 products
    (checked, so the test means something), but not the entropy model's exact integer ones."""
    import os

    env = {**os.environ, "OPENBLAS_CORETYPE": core}
    here = subprocess.run([sys.executable, "-c", _PRODUCT_HASH], capture_output=True, text=True).stdout
    there = subprocess.run([sys.executable, "-c", _PRODUCT_HASH], capture_output=True, text=True, env=env).stdout
    if here == there:
        pytest.skip(f"this OpenBLAS does not switch to {core} kernels")
    _decodes_in_another_process(entropy_dir, tmp_path, env=env)


def test_decodes_in_another_process_with_other_threads(entropy_dir, tmp_path):
    _decodes_in_another_process(entropy_dir, tmp_path, prelude="import torch\ntorch.set_num_threads(2)\n")


def _tiny_entropy_recipe(tiny_model_dir, audio, out_dir, *extra):
    from codec.train import load_recipe
    from tests.conftest import REPO

    return load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [
        "entropy.codec=tiny-16k", "entropy.dim=32", "entropy.layers=1", "entropy.heads=2",
        "entropy.depth_hidden=32", f"data.codec_model={tiny_model_dir}", f"data.train_dir={audio}",
        f"data.dev_dir={audio}", "data.segment_frames=32", f"run.out_dir={out_dir}", "run.log_every=10",
        "run.batch_size=4", *extra])


def _tone_folder(folder, count=3):
    from tests.conftest import tone, write_audio

    folder.mkdir()
    for i in range(count):
        write_audio(folder / f"{i}.wav", tone(1.0 + i, 16000, 200 + 100 * i), 16000)
    return folder


def test_entropy_training_leaves_out_a_bad_file_and_checks_dev_dir_first(tiny_model_dir, tmp_path):
    """As codec training does: an unreadable file is left out with a warning, not the end of the
    run; a wrong data.dev_dir fails, named, before the training set is coded."""
    import io

    from rich.console import Console

    from codec.errors import CodecError
    from codec.train import train_any

    audio = _tone_folder(tmp_path / "audio")
    (audio / "bad.wav").write_bytes(b"junk")
    with pytest.raises(CodecError, match=r"recipe value data.dev_dir=nosuch \(relative to the current folder"):
        train_any(_tiny_entropy_recipe(tiny_model_dir, audio, tmp_path / "r1", "run.max_steps=2",
                                       "data.dev_dir=nosuch"))
    assert not (tmp_path / "r1" / "codes.npz").exists()
    log = io.StringIO()
    train_any(_tiny_entropy_recipe(tiny_model_dir, audio, tmp_path / "r2", "run.max_steps=2"),
              console=Console(file=log, width=200))
    assert "1 file(s) cannot be read and are left out, first: " in log.getvalue() and "bad.wav" in log.getvalue()
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "a.wav").write_bytes(b"junk")
    with pytest.raises(CodecError, match=r"data.dev_dir=.*allbad': none of its 1 audio files can be read"):
        train_any(_tiny_entropy_recipe(tiny_model_dir, audio, tmp_path / "r3", "run.max_steps=2",
                                       f"data.dev_dir={tmp_path / 'allbad'}"))


def test_entropy_recipe_trains_on_a_tiny_codec(tiny_model_dir, tmp_path):
    from codec.entropy import load_entropy_model
    from codec.train import load_recipe, train_any
    from tests.conftest import REPO

    audio = _tone_folder(tmp_path / "audio")
    train_any(_tiny_entropy_recipe(tiny_model_dir, audio, tmp_path / "run", "run.max_steps=30"))
    log = [json.loads(line) for line in (tmp_path / "run" / "train.log").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 30]
    assert 0 < log[-1]["dev_bits_per_code_12"] < 11   # held-out bits, logged at the end
    model = load_entropy_model(tmp_path / "run" / "model")
    assert model.config.codec == "tiny-16k"
    from codec.errors import CodecError
    expected = f"entropy.codec is 'conv-16k' but data.codec_model={tiny_model_dir} is the model 'tiny-16k'"
    with pytest.raises(CodecError, match=re.escape(expected)):
        train_any(load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [
            f"data.codec_model={tiny_model_dir}", f"run.out_dir={tmp_path / 'other'}",
            f"data.train_dir={audio}", "data.dev_dir=null"]))   # (without ../shared/data too)


def test_a_clip_too_short_for_range_coding_is_written_plain_without_a_warning(tmp_path):
    """conv-16k range-codes by default; a clip of a few frames (or none) gains less than the ~70 bytes
    range coding adds to the header, which is no sign of audio unlike the entropy model's training
    data: the plain file is written, and nothing is said (a fresh-eyes review found the warning on
    0- and 1-sample inputs)."""
    from tests.conftest import run_cli, write_audio

    rng = np.random.default_rng(0)
    for name, samples in [("empty", 0), ("one", 1), ("fifty_ms", 800)]:
        source = write_audio(tmp_path / f"{name}.wav", 0.1 * rng.standard_normal((samples, 1)), 16000)
        result = run_cli("encode", source, tmp_path / f"{name}.codes", "-m", "conv-16k")
        assert result.exit_code == 0 and "warning" not in result.output, result.output
        info = json.loads(run_cli("info", tmp_path / f"{name}.codes", "--json").stdout)
        assert info["entropy_coded"] is False, name


def test_cli_entropy_codes_with_a_shipped_entropy_model(tiny_model_dir, entropy_dir, tmp_path):
    import json
    import shutil

    import soundfile as sf
    from typer.testing import CliRunner

    from cli.main import app
    from tests.conftest import tone, write_audio

    model_dir = tmp_path / "tiny-16k"
    shutil.copytree(tiny_model_dir, model_dir)
    for name in ("entropy.safetensors", "entropy_config.json"):
        shutil.copy(entropy_dir / name, model_dir / name)
    source = write_audio(tmp_path / "a.wav", tone(1.0, 16000), 16000)
    runner = CliRunner()
    # (this untrained entropy model codes a tone's codes larger than plain: the default writes the smaller file,
    # --entropy the range-coded one, each saying so)
    default = runner.invoke(app, ["encode", str(source), str(tmp_path / "d.codes"), "--model", str(model_dir)])
    assert default.exit_code == 0 and "made the codes no smaller" in default.output
    assert "written without it" in " ".join(default.output.split())
    assert json.loads(runner.invoke(app, ["info", str(tmp_path / "d.codes"), "--json"]).stdout)["entropy_coded"] \
        is False
    (tmp_path / "batch").mkdir()
    shutil.copy(source, tmp_path / "batch" / "a.wav")   # a batch chooses as one file does
    batch = runner.invoke(app, ["encode", str(tmp_path / "batch"), str(tmp_path / "out"), "--model", str(model_dir)])
    assert batch.exit_code == 0 and "written without it" in " ".join(batch.output.split())
    assert json.loads(runner.invoke(app, ["info", str(tmp_path / "out" / "a.codes"), "--json"]).stdout)[
        "entropy_coded"] is False
    encoded = runner.invoke(app, ["encode", str(source), str(tmp_path / "e.codes"), "--model", str(model_dir),
                                  "--entropy"])
    assert encoded.exit_code == 0 and "written range-coded, as asked" in " ".join(encoded.output.split())
    plain_encode = runner.invoke(app, ["encode", str(source), str(tmp_path / "p.codes"), "--model", str(model_dir),
                                       "--no-entropy"])
    assert plain_encode.exit_code == 0
    plain = json.loads(runner.invoke(app, ["info", str(tmp_path / "p.codes"), "--json"]).stdout)
    assert plain["entropy_coded"] is False
    without = runner.invoke(app, ["encode", str(source), str(tmp_path / "n.codes"), "--model", str(tiny_model_dir)])
    assert without.exit_code == 0                              # a model without one codes plainly
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "n.codes"), "--json"]).stdout)
    assert info["entropy_coded"] is False
    refused = runner.invoke(app, ["encode", str(source), str(tmp_path / "r.codes"), "--model", str(tiny_model_dir),
                                  "--entropy"])
    assert refused.exit_code == 1 and "has no entropy model" in refused.output
    # the folder given is named: its config names the shipped model, which the hint may suggest
    assert f"(its folder {tiny_model_dir} has no entropy.safetensors and entropy_config.json)" in \
        " ".join(refused.output.split())
    assert "with a model that has one (--model conv-16k)" in " ".join(refused.output.split())  # the shipped one
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "e.codes"), "--json"]).stdout)
    assert info["entropy_coded"] is True and info["entropy_model"] == "entropy-tiny"
    assert runner.invoke(app, ["decode", str(tmp_path / "e.codes"), str(tmp_path / "e.wav"),
                               "--model", str(model_dir)]).exit_code == 0
    assert sf.info(str(tmp_path / "e.wav")).frames == 16000
    result = runner.invoke(app, ["decode", str(tmp_path / "e.codes"), str(tmp_path / "x.wav"),
                                 "--model", str(tiny_model_dir)])
    assert result.exit_code == 1 and "which the decoding model does not have" in result.output


def test_entropy_coded_packets(entropy_dir):
    from codec.packets import StreamInfo, packet_bytes, read_packets

    coder = EntropyCoder(load_entropy_model(entropy_dir))
    info = StreamInfo("tiny-16k", "0123abcd", 16000, 2, 50, 1024, coder.name, coder.weights[:8])
    codes = skewed_codes(channels=2, codebooks=6, frames=10)
    plain, coded = packet_bytes(7, codes, info), packet_bytes(7, codes, info, coder)
    assert len(coded) < len(plain) and coded[3] & 0x80 and coded[3] & 0x7F == 6   # the codebooks byte
    (packet,) = read_packets(coded, 0, info, coder)
    assert packet.sequence == 7 and np.array_equal(packet.codes, codes)
    assert [p.sequence for p in read_packets(coded + plain, 0, info)] == [7]   # no coder: skipped, next read
    perturbed = load_entropy_model(entropy_dir)
    with torch.no_grad():
        perturbed.out_bias += 0.5 * torch.randn_like(perturbed.out_bias)
    assert list(read_packets(coded, 0, info, EntropyCoder(perturbed))) == []   # caught by the codes' CRC


def test_a_packet_whose_range_coding_passes_its_length_field_goes_bit_packed(entropy_dir):
    from codec.packets import MAX_CODED_LENGTH, StreamInfo, packet_bytes, read_packets

    class Longwinded(EntropyCoder):   # (many channels and frames of codes it predicts badly)
        def encode_chunk(self, codes):
            return bytes(MAX_CODED_LENGTH + 1)

    coder = EntropyCoder(load_entropy_model(entropy_dir))
    info = StreamInfo("tiny-16k", "0123abcd", 16000, 2, 50, 1024, coder.name, coder.weights[:8])
    codes = skewed_codes(channels=2, codebooks=6, frames=10)
    packet = packet_bytes(7, codes, info, Longwinded(load_entropy_model(entropy_dir)))
    assert packet == packet_bytes(7, codes, info) and not packet[3] & 0x80   # plain, flag clear (was struct.error)
    (read,) = read_packets(packet, 0, info, coder)
    assert np.array_equal(read.codes, codes)


def test_an_entropy_coded_packet_claiming_more_codebooks_than_the_model_is_damaged(entropy_dir):
    import binascii

    from codec.packets import StreamInfo, packet_bytes, read_packets

    coder = EntropyCoder(load_entropy_model(entropy_dir))
    info = StreamInfo("tiny-16k", "0123abcd", 16000, 1, 50, 1024, coder.name, coder.weights[:8])
    coded = bytearray(packet_bytes(3, skewed_codes(codebooks=6, frames=4), info, coder))
    coded[3] = 0x80 | (CONFIG.num_codebooks + 5)   # a crafted codebook count, its CRC made to match
    coded[-2:] = binascii.crc_hqx(bytes(coded[:-2]), 0).to_bytes(2, "little")
    assert list(read_packets(bytes(coded), 0, info, coder)) == []   # skipped as damaged, not an IndexError


def test_a_run_of_sync_bytes_is_skipped_without_a_crc_for_each(entropy_dir, monkeypatch):
    """0xC5 0xC5 ... reads as packets claiming entropy-coded payloads of 50 kB: their lengths
    (over 24 bits a code) and a stream without an entropy model refuse them before any CRC, where
    a CRC of each made 640 kB take minutes."""
    import binascii

    from codec import packets

    coder = EntropyCoder(load_entropy_model(entropy_dir))
    crcs = []
    monkeypatch.setattr(packets.binascii, "crc_hqx", lambda data, start: crcs.append(len(data)) or 0)
    for entropy in ((None, None), (coder.name, coder.weights[:8])):
        info = packets.StreamInfo("tiny-16k", "0123abcd", 16000, 1, 50, 1024, *entropy)
        assert list(packets.read_packets(packets.PACKET_SYNC * 5000, 0, info, coder)) == []
    assert crcs == []
    monkeypatch.undo()

    def crafted(length: int) -> bytes:   # 4 frames of 6 codebooks, ``length`` bytes of payload, CRC to match
        head = bytes([0xC5, 3, 0, 0x80 | 6, 4]) + length.to_bytes(2, "little") + bytes(length + 2)
        return head + binascii.crc_hqx(head, 0).to_bytes(2, "little")

    info = packets.StreamInfo("tiny-16k", "0123abcd", 16000, 1, 50, 1024, coder.name, coder.weights[:8])
    assert packets._framed(crafted(3 * 4 * 6 + 16), 0, info) is not None   # the longest a range coder writes
    assert packets._framed(crafted(3 * 4 * 6 + 17), 0, info) is None


def test_decoding_without_a_model_finds_the_installed_folder_with_its_entropy_model(tiny_model_dir, entropy_dir,
                                                                                    tmp_path, monkeypatch):
    """Two installed folders of one codec and weights, only one with the entropy model a file
    names: decoding without --model takes that one, whichever comes first."""
    import shutil

    from tests.conftest import run_cli, tone, write_audio

    installed = tmp_path / "installed"
    shutil.copytree(tiny_model_dir, installed / "a-plain")
    shutil.copytree(tiny_model_dir, installed / "b-entropy")
    for name in ("entropy.safetensors", "entropy_config.json"):
        shutil.copy(entropy_dir / name, installed / "b-entropy" / name)
    monkeypatch.setenv("CODEC_MODELS_DIR", str(installed))
    source = write_audio(tmp_path / "a.wav", tone(0.5, 16000), 16000)
    assert run_cli("encode", source, tmp_path / "e.codes", "--model", installed / "b-entropy",
                   "--entropy").exit_code == 0   # (its default writes the smaller file: this model's is plain)
    assert run_cli("encode", source, tmp_path / "p.codes", "--model", installed / "a-plain").exit_code == 0
    for codes in ("e", "p"):
        result = run_cli("decode", tmp_path / f"{codes}.codes", tmp_path / f"{codes}.wav")
        assert result.exit_code == 0, result.output
    shutil.copytree(tiny_model_dir, installed / "0-broken")   # first by name, and it does not load:
    (installed / "0-broken" / "entropy.safetensors").write_bytes(b"")   # another codec's entropy model
    (installed / "0-broken" / "entropy_config.json").write_text('{"name": "e", "codec": "other-16k"}')
    result = run_cli("decode", tmp_path / "p.codes", tmp_path / "p2.wav")
    assert result.exit_code == 0, result.output
    import codec as api
    from codec.errors import CodecError

    data = (tmp_path / "e.codes").read_bytes()   # (the hint named the codec, which no folder is called)
    with pytest.raises(CodecError, match=r"pass model=codec.load_model\('b-entropy'\)"):
        api.Codes.from_bytes(data)
    assert api.Codes.from_bytes(data, model=api.load_model("b-entropy")).codes.shape[0] == 1
    monkeypatch.delenv("CODEC_MODELS_DIR")
    with pytest.raises(CodecError, match=r"pass model= the model that encoded them \(a Codec, or its name or"):
        api.Codes.from_bytes(data)


def test_cli_streams_entropy_coded_packets(tiny_model_dir, entropy_dir, tmp_path):
    import shutil

    import soundfile as sf

    from tests.conftest import run_cli, tone, write_audio

    model_dir = tmp_path / "tiny-16k"
    shutil.copytree(tiny_model_dir, model_dir)
    for name in ("entropy.safetensors", "entropy_config.json"):
        shutil.copy(entropy_dir / name, model_dir / name)
    source = write_audio(tmp_path / "a.wav", tone(1.07, 16000), 16000)
    result = run_cli("stream", "--input", source, "--output", tmp_path / "out.wav", "--save", tmp_path / "s.cods",
                     "--model", model_dir, "--fast", "--entropy", "--packet-loss", "0.1")
    assert result.exit_code == 0, result.output
    assert "180 packet" in result.output                     # 9 frames of added latency at 10 per packet
    assert sf.info(str(tmp_path / "out.wav")).frames == 17120
    decoded = run_cli("decode", tmp_path / "s.cods", tmp_path / "d.wav", "--model", model_dir)
    assert decoded.exit_code == 0 and sf.info(str(tmp_path / "d.wav")).frames == 17120
    refused = run_cli("decode", tmp_path / "s.cods", tmp_path / "x.wav", "--model", tiny_model_dir)
    assert refused.exit_code == 1 and "entropy-coded" in refused.output
    assert f"but the decoding model's ({tiny_model_dir}) is none: decode it with the folder of model 'tiny-16k' " \
        "that holds that entropy model (--model FOLDER" in " ".join(refused.output.split())
    assert "warning" not in result.output
    few = run_cli("stream", "--input", source, "--save", tmp_path / "few.wav", "--no-play", "--model", model_dir,
                  "--fast", "--entropy", "--packet-frames", "1")
    text = " ".join(few.output.split())
    assert few.exit_code == 0
    assert "warning: --entropy with --packet-frames 1: each packet pays the range coder's flush" in text
    assert f"warning: --save {tmp_path / 'few.wav'}: holds packets, not audio, whatever its suffix says" in text


def test_codebook_choices_beyond_what_the_codec_writes_are_refused(tiny_model_dir, tmp_path):
    """A codec whose top bitrate uses 12 of its 24 codebooks (the low_* models) never writes
    codes of the other 12: an entropy model is not trained on counts it will never code."""
    import shutil

    from rich.console import Console

    from codec.errors import CodecError
    from codec.train.entropy_trainer import EntropyRecipe, code_folder

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "bitrates_kbps": [1.5, 3.0, 6.0]}))
    recipe = EntropyRecipe.from_dict({"entropy": {"codec": "tiny-16k"}, "data": {"codec_model": str(model_dir)}})
    with pytest.raises(CodecError, match=r"data.codebook_choices=\[3, 6, 12, 24\] lists up to 24 codebooks, but "
                                         r"data.codec_model=.* codes at most 12 \(at its top bitrate, 6 kbps\): "
                                         r"list its bitrates' counts, data.codebook_choices=\[3, 6, 12\]"):
        code_folder(recipe, tmp_path / "no-audio", tmp_path / "a.npz", Console(quiet=True))


@pytest.mark.parametrize("leveled", [False, True])
def test_offline_codes_of_a_folder_equal_what_encode_writes(tiny_model_dir, tmp_path, leveled):
    """The GPU path of the entropy trainer (one offline encode per file, padded to whole frames)
    gives the codes ``codec encode`` writes, also for lengths that are not whole frames, and for a
    model that high-passes and levels its input (as the default model does)."""
    import shutil

    from rich.console import Console

    from codec.train.entropy_trainer import EntropyRecipe, code_folder
    from tests.conftest import tone, write_audio

    if leveled:
        model_dir = tmp_path / "model"
        shutil.copytree(tiny_model_dir, model_dir)
        config = json.loads((model_dir / "config.json").read_text())
        (model_dir / "config.json").write_text(json.dumps({**config, "input_level_dbfs": -18.0,
                                                           "input_highpass_hz": 80.0}))
    else:
        model_dir = tiny_model_dir
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, seconds in enumerate((0.513, 1.0, 0.77731)):
        write_audio(audio / f"{i}.wav", tone(seconds, 16000, 200 + 150 * i), 16000)
    write_audio(audio / "3.wav", tone(0.61, 22050, 300), 22050)   # resampled first
    write_audio(audio / "4.wav", 0.1 * tone(0.9, 8000, 250), 8000)   # its empty band filled
    recipe = EntropyRecipe.from_dict({"entropy": {"codec": "tiny-16k"}, "data": {"codec_model": str(model_dir)}})
    console = Console(quiet=True)
    streamed = code_folder(recipe, audio, tmp_path / "a.npz", console)
    offline = code_folder(recipe, audio, tmp_path / "b.npz", console, offline=True)
    assert [c.shape for c in offline] == [c.shape for c in streamed]
    for a, b in zip(streamed, offline, strict=True):
        # floating-point near-ties at most: one flips a code and, through the residual, the later
        # codebooks of that frame; how many depends on the CPU's float kernels (1.9% measured with
        # AVX2 only, under 1% with AVX-512). A misaligned frame or padding changes most codes.
        assert (a != b).mean() < 0.05


def test_entropy_training_resumes_names_changes_and_stops_on_ctrl_c(tiny_model_dir, tmp_path, monkeypatch):
    import io
    import signal

    from rich.console import Console

    from codec.errors import CodecError, TrainingStopped
    from codec.train import train_any
    from codec.train.entropy_trainer import CodeCrops
    from codec.train.trainer import CHECKPOINT_FILE

    audio, out = _tone_folder(tmp_path / "audio"), tmp_path / "run"
    train_any(_tiny_entropy_recipe(tiny_model_dir, audio, out, "run.max_steps=4"))
    with pytest.raises(CodecError, match=r"changed: entropy.dim=32 -> 48\).*needs the checkpoint's entropy section"):
        train_any(_tiny_entropy_recipe(tiny_model_dir, audio, out, "run.max_steps=8", "entropy.dim=48"), resume=True)

    other = _tone_folder(tmp_path / "other", count=2)   # other audio: named, and coded again (not the cache)
    report = io.StringIO()
    train_any(_tiny_entropy_recipe(tiny_model_dir, other, out, "run.max_steps=6", f"data.dev_dir={audio}"),
              resume=True, console=Console(file=report, width=400))
    assert f"data.train_dir='{audio}' -> '{other}'" in report.getvalue()
    assert "coding" in report.getvalue() and len(np.load(out / "codes.npz").files) == 1 + 2
    log = (out / "train.log").read_text()   # finished: resuming it again trains and logs nothing
    again = io.StringIO()
    train_any(_tiny_entropy_recipe(tiny_model_dir, other, out, "run.max_steps=6", f"data.dev_dir={audio}"),
              resume=True, console=Console(file=again, width=400))
    assert "nothing to train" in again.getvalue() and (out / "train.log").read_text() == log

    with monkeypatch.context() as patch:   # a loss that is never finite stops the run, named (it looped forever)
        patch.setattr("codec.train.entropy_trainer.MAX_NON_FINITE_IN_A_ROW", 3)
        patch.setattr(EntropyModel, "bits", lambda self, codes: torch.tensor(float("nan")))
        with pytest.raises(CodecError, match="training diverged at step 6: 3 steps in a row"):
            train_any(_tiny_entropy_recipe(tiny_model_dir, other, out, "run.max_steps=50"), resume=True)

    real_batch, calls = CodeCrops.batch, []

    def batch_then_ctrl_c(self, *args):   # Ctrl-C arrives during the third step: saved after it
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real_batch(self, *args)

    monkeypatch.setattr(CodeCrops, "batch", batch_then_ctrl_c)
    before = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        with pytest.raises(TrainingStopped) as stopped:
            train_any(_tiny_entropy_recipe(tiny_model_dir, other, out, "run.max_steps=50"), resume=True)
        assert stopped.value.signum == signal.SIGINT
        assert torch.load(out / CHECKPOINT_FILE, weights_only=True)["step"] == 6 + 3
    finally:
        signal.signal(signal.SIGINT, before)


def test_entropy_training_continues_from_an_entropy_model(tiny_model_dir, entropy_dir, tmp_path):
    """``run.init_from``: a new run starts from an exported entropy model; a different
    configuration is refused by name."""
    import dataclasses
    import shutil

    from codec.errors import CodecError
    from codec.train import load_recipe, train_any
    from tests.conftest import REPO, tone, write_audio

    audio = tmp_path / "audio"
    audio.mkdir()
    write_audio(audio / "a.wav", tone(1.0, 16000, 300), 16000)
    source = load_entropy_model(entropy_dir)
    c = source.config
    settings = [f"entropy.{key}={value}" for key, value in dataclasses.asdict(c).items()] + [
                f"data.codec_model={tiny_model_dir}", f"data.train_dir={audio}", "data.dev_dir=null",
                "data.codebook_choices=[3]",
                "data.segment_frames=16", f"run.init_from={entropy_dir}", "run.batch_size=2", "optim.lr=1e-12"]
    recipe = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml",
                         settings + [f"run.out_dir={tmp_path / 'run'}", "run.max_steps=2"])
    train_any(recipe)
    trained = load_entropy_model(tmp_path / "run" / "model").state_dict()
    for name, value in source.state_dict().items():   # a vanishing learning rate: the same weights
        assert torch.allclose(trained[name], value, atol=1e-2 * float(value.abs().max()) + 1e-6), name
    other = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml",
                        settings + [f"run.out_dir={tmp_path / 'other'}", "run.max_steps=2", "entropy.dim=48"])
    with pytest.raises(CodecError, match="differs from the recipe"):
        train_any(other)
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(tiny_model_dir / "config.json", empty / "config.json")
    missing = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml",
                          settings + [f"run.out_dir={tmp_path / 'missing'}", f"run.init_from={empty}"])
    with pytest.raises(CodecError, match="no entropy model"):
        train_any(missing)


def test_an_entropy_model_of_another_codec_is_refused(tiny_model_dir, entropy_dir, tmp_path):
    import json
    import shutil

    from codec.errors import CodecError
    from codec.models import load_model

    model_dir = tmp_path / "tiny-16k"
    shutil.copytree(tiny_model_dir, model_dir)
    shutil.copy(entropy_dir / "entropy.safetensors", model_dir / "entropy.safetensors")
    config = json.loads((entropy_dir / "entropy_config.json").read_text())
    (model_dir / "entropy_config.json").write_text(json.dumps({**config, "codec": "conv-16k"}))
    with pytest.raises(CodecError, match="was trained on the codes of 'conv-16k' .*not on this model's; remove"):
        load_model(model_dir)
    (model_dir / "entropy_config.json").write_text(json.dumps(config))
    assert load_model(model_dir).entropy_model is not None


def test_a_damaged_chunk_length_is_not_called_a_cut_file_alone(entropy_dir):
    """An entropy-coded chunk's length is a field of its own: damaged, it claims bytes far past the
    end, and the error says so rather than only "truncated"."""
    import re
    import struct

    coded = to_bytes(codes_file(skewed_codes()), EntropyCoder(load_entropy_model(entropy_dir)))
    with pytest.raises(BitstreamError, match="truncated in chunk 0") as cut:
        from_bytes(coded[:-1], EntropyCoder(load_entropy_model(entropy_dir)))
    offset = int(re.search(r"bytes (\d+)-", str(cut.value)).group(1))   # where chunk 0's length field is
    damaged = coded[:offset] + struct.pack("<I", 10_000_000) + coded[offset + 4:]
    with pytest.raises(BitstreamError, match=r"the file has \d+ bytes, or the chunk's length field is damaged"):
        from_bytes(damaged, EntropyCoder(load_entropy_model(entropy_dir)))


@pytest.mark.parametrize("content", ["pickled", "text", "other arrays", "folder"])
def test_a_codes_file_that_entropy_training_did_not_write_is_refused_and_kept(tiny_model_dir, tmp_path, content):
    """``run.out_dir/codes.npz`` is the run's cache of codes: a file of that name the trainer did
    not write is neither loaded (no pickled objects: it was an internal error at np.load) nor
    replaced."""
    from codec.errors import CodecError
    from codec.train import train_any

    audio, out = _tone_folder(tmp_path / "audio"), tmp_path / "run"
    out.mkdir()
    cache = out / "codes.npz"
    if content == "pickled":
        with open(cache, "wb") as file:
            np.savez(file, source=np.array(["mine"], dtype=object), c0=np.array([{"a": 1}], dtype=object))
    elif content == "text":
        cache.write_text("my notes")
    elif content == "other arrays":
        with open(cache, "wb") as file:
            np.savez(file, weights=np.ones(3))
    else:
        cache.mkdir()
    before = cache.read_bytes() if cache.is_file() else None
    reason = {"pickled": "pickled objects, which are not loaded", "text": "not an .npz archive",
              "other arrays": "other arrays", "folder": "not a file"}[content]
    with pytest.raises(CodecError, match=rf"codes.npz: not a cache of codes that entropy training wrote \({reason}\); "
                                         r"a run keeps the codes of its audio in this file, and does not replace one "
                                         r"of yours: move it away, or set another run.out_dir"):
        train_any(_tiny_entropy_recipe(tiny_model_dir, audio, out, "run.max_steps=2", "data.dev_dir=null"))
    assert (cache.read_bytes() if cache.is_file() else None) == before and cache.exists()


def test_a_codes_cache_of_a_run_before_the_source_entry_is_coded_again(tiny_model_dir, tmp_path):
    """Runs before 2026-12-04 wrote codes.npz without its ``source``: theirs, so coded again, not refused."""
    from rich.console import Console

    from codec.train import train_any

    audio, out = _tone_folder(tmp_path / "audio"), tmp_path / "run"
    out.mkdir()
    with open(out / "codes.npz", "wb") as file:
        np.savez(file, c0=np.zeros((24, 50), np.int16), c1=np.zeros((24, 30), np.int16))
    console = Console(record=True, width=200)
    train_any(_tiny_entropy_recipe(tiny_model_dir, audio, out, "run.max_steps=2", "data.dev_dir=null"),
              console=console)
    assert "holds the codes of another codec or other files; coding" in console.export_text()
    with np.load(out / "codes.npz") as stored:
        assert "source" in stored.files


@pytest.mark.parametrize("override", ["run.precision=bf16", "run.compile=true", "run.init_fresh=[head]",
                                      "run.audio_every=10", "run.tensorboard=true", "optim.freeze=[layers]",
                                      "optim.ema_decay=0.999"])
def test_entropy_recipes_refuse_the_keys_only_codec_training_uses(override):
    from codec.errors import CodecError
    from codec.train import load_recipe
    from tests.conftest import REPO

    key = override.partition("=")[0]
    with pytest.raises(CodecError, match=rf"^override '{re.escape(override)}': recipe value {key}=.* is for codec "
                                         r"training; an entropy recipe does not use it \(.*\): remove it"):
        load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [override])


def test_entropy_recipes_take_codec_keys_that_say_what_entropy_training_does():
    """``run.tensorboard=false`` (which scripts/gpu_session.py and the README tour pass to every run), fp32."""
    from codec.train import load_recipe
    from tests.conftest import REPO

    recipe = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [
        "run.tensorboard=false", "run.precision=fp32", "run.compile=false", "run.init_fresh=[]", "optim.freeze=[]",
        "optim.ema_decay=0"])
    assert recipe.run.tensorboard is False


def test_entropy_training_saves_when_its_console_reader_goes_away_at_the_last_record(tiny_model_dir, tmp_path):
    """`| head` can close the pipe before the record of a run's last steps: that write is in the
    guard, so the run still saves its checkpoint and model, and stops as for SIGPIPE."""
    import signal

    from rich.console import Console

    from codec.errors import TrainingStopped
    from codec.train import train_any
    from tests.conftest import ReaderGone

    out = tmp_path / "run"
    with pytest.raises(TrainingStopped) as stopped:
        train_any(_tiny_entropy_recipe(tiny_model_dir, _tone_folder(tmp_path / "audio"), out, "run.max_steps=3"),
                  console=Console(file=ReaderGone()))
    assert stopped.value.signum == signal.SIGPIPE
    assert (out / "checkpoint.pt").is_file() and (out / "model" / "entropy.safetensors").is_file()


def test_entropy_training_says_where_its_model_is_and_how_a_codec_gets_it(tiny_model_dir, tmp_path):
    """The last line names the two files and the codec folder to copy them into; copied there,
    the codec loads them."""
    import io
    import shutil

    from rich.console import Console

    from codec.models import load_model
    from codec.train import train_any

    audio, out = _tone_folder(tmp_path / "audio"), tmp_path / "run"
    (audio / "notes.txt").write_text("not audio")
    report = io.StringIO()
    train_any(_tiny_entropy_recipe(tiny_model_dir, audio, out, "run.max_steps=2", "data.dev_dir=null"),
              console=Console(file=report, width=1000))
    assert "note: data.train_dir: skipped 1 file that is not audio (.txt)" in report.getvalue()
    last = report.getvalue().strip().splitlines()[-1]
    assert last == (f"finished at step 2 (run.max_steps); entropy model in {out / 'model'} (entropy.safetensors, "
                    f"entropy_config.json): to range-code with it, copy both files beside config.json in the codec's "
                    f"model folder, {tiny_model_dir} (data.codec_model), or in a copy of that folder, and give that "
                    f"folder to codec encode --model")
    from codec.models.loading import shipped_models_dir
    from codec.train.entropy_trainer import EntropyRecipe, how_to_use
    from tests.conftest import run_cli

    for given in (out / "model", out / "model" / "entropy_config.json"):   # the run's model given as the recipe
        result = run_cli("train", given)
        assert result.exit_code == 1 and "it is a training run's; to resume it" in " ".join(result.output.split())

    shipped = EntropyRecipe.from_dict({"entropy": {"codec": "esc-16k-small"},
                                       "data": {"codec_model": "esc-16k-small"}})
    assert f"copy both files into a copy of the codec's model folder ({shipped_models_dir() / 'esc-16k-small'}, " \
           f"data.codec_model; e.g. cp -r" in how_to_use(shipped, out / "model")   # never into a shipped folder
    mine = tmp_path / "my-codec"
    shutil.copytree(tiny_model_dir, mine)
    assert load_model(mine).entropy_model is None
    for name in ("entropy.safetensors", "entropy_config.json"):
        shutil.copy(out / "model" / name, mine / name)
    assert load_model(mine).entropy_model is not None


def test_entropy_resume_mismatches_are_found_before_the_audio_is_coded(tiny_model_dir, tmp_path):
    """Coding a large training set takes minutes: the folder does not even exist when resuming here."""
    import io

    from rich.console import Console

    from codec.errors import CodecError
    from codec.train import train_any

    audio, out, missing = _tone_folder(tmp_path / "audio"), tmp_path / "run", tmp_path / "no-audio"
    train_any(_tiny_entropy_recipe(tiny_model_dir, audio, out, "run.max_steps=2", "data.dev_dir=null"))
    with pytest.raises(CodecError, match=r"changed: entropy.dim=32 -> 48\).*needs the checkpoint's entropy section"):
        train_any(_tiny_entropy_recipe(tiny_model_dir, missing, out, "run.max_steps=4", "data.dev_dir=null",
                                       "entropy.dim=48"), resume=True)
    report = io.StringIO()
    train_any(_tiny_entropy_recipe(tiny_model_dir, missing, out, "run.max_steps=2", "data.dev_dir=null"),
              resume=True, console=Console(file=report, width=400))
    assert "nothing to train" in report.getvalue()


@pytest.mark.parametrize("offline", [True, False])
def test_coding_the_training_files_leaves_out_one_without_samples(tiny_model, tmp_path, offline):
    """One bad file among many does not stop an entropy run; offline (as on a GPU), one without
    samples stopped it, in the network's encode."""
    import io

    from rich.console import Console

    from codec.train.entropy_trainer import _code_files
    from tests.conftest import tone, write_audio

    write_audio(tmp_path / "empty.wav", np.zeros(0), 16000)
    write_audio(tmp_path / "tone.wav", tone(0.5, 16000), 16000)
    codes = _code_files(tiny_model, tmp_path, [tmp_path / "empty.wav", tmp_path / "tone.wav"], 6.0, offline,
                        torch.device("cpu"), Console(file=io.StringIO()))
    assert len(codes) == 1 and codes[0].shape[-1] == round(0.5 * tiny_model.frame_rate)
