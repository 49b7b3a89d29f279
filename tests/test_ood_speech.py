"""scripts/ood_speech.py: packaged audio becomes mono 16-bit WAV at its own rate, whole or as
excerpts (the downloads themselves need the network and are not tested)."""

import io
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import ood_speech  # noqa: E402  (a script, imported from its folder)


def encoded(audio, rate, subtype):
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_a_16_bit_wav_is_kept_sample_for_sample_and_a_float_stereo_one_is_mixed_down(tmp_path):
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    written = ood_speech.write_speech(encoded(samples, 16000, "PCM_16"), "a.wav", "a.wav", tmp_path)
    assert written == [("a.wav", 6 / 16000, 16000)]
    assert np.array_equal(sf.read(str(tmp_path / "a.wav"), dtype="int16")[0], samples)

    stereo = np.stack([np.full(4800, 0.5), np.full(4800, 0.25)], axis=1).astype(np.float32)
    ood_speech.write_speech(encoded(stereo, 48000, "FLOAT"), "b.wav", "b.wav", tmp_path)
    info = sf.info(str(tmp_path / "b.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (48000, 1, "PCM_16", 4800)
    assert np.all(sf.read(str(tmp_path / "b.wav"), dtype="int16")[0] == round(0.375 * 32768))


def test_excerpts_are_cut_in_seconds_and_raw_files_read_as_16_khz(tmp_path):
    ramp = np.arange(16000 * 3, dtype=np.int64) % 30000
    written = ood_speech.write_speech(ramp.astype("<i2").tobytes(), "x/test.raw",
                                      {"one.wav": (0.5, 1.0), "two.wav": (2.0, 3.0)}, tmp_path)
    assert written == [("one.wav", 0.5, 16000), ("two.wav", 1.0, 16000)]
    assert np.array_equal(sf.read(str(tmp_path / "two.wav"), dtype="int16")[0], ramp[32000:48000])


def test_an_unreadable_file_is_skipped_with_a_note(tmp_path, capsys):
    assert ood_speech.write_speech(b"not audio", "broken.wav", "broken.wav", tmp_path) == []
    assert "skipped broken.wav" in capsys.readouterr().err
    assert not (tmp_path / "broken.wav").exists()


def test_targets_are_found_by_the_end_of_a_packaged_path():
    wanted = {"tests/data/test.wav": {"wb/t.wav": (0.0, 1.0)}, "samples/jfk.wav": "wb/jfk.wav"}
    assert ood_speech._target("pkg-1.0/whisper.cpp/samples/jfk.wav", wanted) == "wb/jfk.wav"
    assert ood_speech._target("pkg-1.0/tests/data/test.wav", wanted) == {"wb/t.wav": (0.0, 1.0)}
    assert ood_speech._target("pkg-1.0/tests/data/other.wav", wanted) is None


def test_a_folder_that_holds_anything_is_refused_before_anything_is_fetched(tmp_path, monkeypatch, capsys):
    """A second run into the same folder replaced its manifest.tsv, even when nothing was gathered."""
    (tmp_path / "manifest.tsv").write_text("mine\n")
    monkeypatch.setattr(sys, "argv", ["ood_speech.py", str(tmp_path)])
    monkeypatch.setattr(ood_speech, "fetch_pypi", lambda *args: pytest.fail("fetched into a used folder"))
    with pytest.raises(SystemExit) as stopped:
        ood_speech.main()
    assert stopped.value.code == 2 and "is not empty (it holds manifest.tsv)" in capsys.readouterr().err
    assert (tmp_path / "manifest.tsv").read_text() == "mine\n"
