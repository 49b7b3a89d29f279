"""Training data: manifests of every kind, level normalisation, noise mixing, random EQ and shelves,
speed perturbation, synthetic tones."""

import json

import numpy as np
import pytest

from codec.datasets import find_inputs
from codec.errors import CodecError
from codec.train.data import Augmentation, RandomCropDataset, _shelf, synthetic_tones
from tests.conftest import tone, write_audio


@pytest.fixture
def folder(tmp_path):
    for i in range(3):
        write_audio(tmp_path / f"clip{i}.wav", tone(1.0, 16000, 200 * (i + 1)), 16000)
    return tmp_path


def test_manifests(folder):
    expected = sorted(folder.glob("*.wav"))
    (folder / "list.tsv").write_text("path\tspeaker\n" + "".join(f"{p.name}\tx\n" for p in expected))
    (folder / "list.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in expected))
    (folder / "wav.scp").write_text("".join(f"utt{i} {p.name}\n" for i, p in enumerate(expected)))
    (folder / "excel.tsv").write_bytes(b"\xef\xbb\xbf" + (folder / "list.tsv").read_bytes())   # with a BOM
    for manifest in ("list.tsv", "excel.tsv", "list.jsonl", "wav.scp"):
        assert [p.resolve() for p in find_inputs(folder / manifest)] == [p.resolve() for p in expected]
    (folder / "bad.scp").write_text("utt1 sox a.wav -t wav - |\n")
    with pytest.raises(CodecError, match="no piped commands"):
        find_inputs(folder / "bad.scp")
    (folder / "spaced.tsv").write_text("path\tspeaker\n" + "".join(f" {p.name} \tx\n" for p in expected))
    assert [p.resolve() for p in find_inputs(folder / "spaced.tsv")] == [p.resolve() for p in expected]
    (folder / "missing.tsv").write_text("path\nclip0.wav\ngone/clip9.wav\n")   # left out where read, as an
    assert find_inputs(folder / "missing.tsv")[1] == folder / "gone" / "clip9.wav"   # absolute path is
    for name, text in (("none.tsv", "path\n"), ("none.jsonl", ""), ("none.scp", "\n")):
        (folder / name).write_text(text)
        with pytest.raises(CodecError, match=rf"{name}: the manifest lists no files"):
            find_inputs(folder / name)
    (folder / "columns.tsv").write_text("Path\tspeaker\nclip0.wav\tx\n")
    with pytest.raises(CodecError, match=r"columns.tsv: the TSV header has no 'path' column \(its columns: 'Path', "
                                         r"'speaker'\)"):
        find_inputs(folder / "columns.tsv")


@pytest.mark.parametrize("name, text, expected", [
    ("short.tsv", "speaker\tpath\nx\tclip0.wav\ny\n", r"short.tsv:3: expected a 'path' column value .*got None"),
    ("empty.tsv", "path\n\"\"\n", r"empty.tsv:2: expected a 'path' column value .*got ''"),
    ("null.jsonl", '{"path": "clip0.wav"}\n{"path": null}\n', r"null.jsonl:2: expected a 'path' that is a string"),
    ("number.jsonl", '{"path": 3}\n', r"number.jsonl:1: expected a 'path' that is a string .*got 3"),
    ("deep.jsonl", "[" * 100000 + "\n", r"deep.jsonl:1: not a JSON object with a 'path' key"),
    ("latin.tsv", b"path\ncaf\xe9.wav\n", r"latin.tsv: cannot read the manifest \(not UTF-8 text\)"),
])
def test_a_malformed_manifest_names_its_line(folder, name, text, expected):
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CodecError, match=expected):
        find_inputs(path)


def test_a_malformed_training_manifest_names_its_line_as_a_line(folder, tmp_path):
    """Named by the recipe value that gave it, "FILE:2:" lost its file: "line 2" then says what 2 is."""
    from codec.train import load_recipe, train_any

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(next(folder.glob("*.wav")))}) + "\n[1]\n")
    recipe = load_recipe("tiny", [f"data.train_dir={manifest}", f"run.out_dir={tmp_path / 'run'}"])
    with pytest.raises(CodecError, match=rf"^override 'data.train_dir={manifest}': line 2: not a JSON object"):
        train_any(recipe)


def test_level_normalisation(folder):
    data = RandomCropDataset(folder, 16000, 8000, level_db=(-30.0, -20.0))
    batch = data.batch(16).numpy()
    levels = 10 * np.log10(np.mean(batch ** 2, axis=-1))
    assert np.all(levels > -30.5) and np.all(levels < -19.5)
    assert np.abs(batch).max() <= 0.99 + 1e-6


def test_a_noise_folder_of_silence_or_no_samples_is_refused(tmp_path):
    # (as the training folder is: mixed in, it added nothing, without a word)
    (tmp_path / "silent").mkdir()
    (tmp_path / "empty").mkdir()
    write_audio(tmp_path / "silent" / "z.wav", np.zeros(16000), 16000)
    write_audio(tmp_path / "empty" / "e.wav", np.zeros(0), 16000)
    with pytest.raises(CodecError, match=r"silent: all of its audio is digital silence \(every sample 0\); as noise "
                                         r"it would add nothing"):
        RandomCropDataset.noise_from(tmp_path / "silent", 16000)
    (tmp_path / "quiet").mkdir()   # but quiet noise serves: it is scaled to the SNR drawn
    write_audio(tmp_path / "quiet" / "q.wav", 5e-5 * np.random.default_rng(0).standard_normal(16000), 16000,
                subtype="FLOAT")
    assert len(RandomCropDataset.noise_from(tmp_path / "quiet", 16000)) == 1
    with pytest.raises(CodecError, match=r"empty: holds no audio \(its files have no samples\)"):
        RandomCropDataset.noise_from(tmp_path / "empty", 16000)


def test_noise_mixing_and_eq(folder, tmp_path_factory):
    noise_dir = tmp_path_factory.mktemp("noise")
    write_audio(noise_dir / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    clean = RandomCropDataset(folder, 16000, 8000, seed=3).batch(4).numpy()
    augmented = RandomCropDataset(folder, 16000, 8000, seed=3, augmentation=Augmentation(
        RandomCropDataset.noise_from(noise_dir, 16000), noise_probability=1.0, noise_snr_db=(10.0, 10.0),
        eq_probability=1.0)).batch(4).numpy()
    assert np.all(np.isfinite(augmented))
    assert not np.allclose(clean, augmented)


@pytest.mark.parametrize("high, corner, flat_hz, shelf_hz",
                         [(False, 300.0, 4000.0, 30.0), (True, 3000.0, 300.0, 7800.0)])
def test_shelf_response(high, corner, flat_hz, shelf_hz):
    impulse = np.zeros(8192, dtype=np.float32)
    impulse[0] = 1.0
    response = np.abs(np.fft.rfft(_shelf(impulse, 16000, corner, 8.0, high)))
    frequencies = np.fft.rfftfreq(8192, 1 / 16000)
    gain_db = lambda hz: 20 * np.log10(response[np.argmin(np.abs(frequencies - hz))])  # noqa: E731
    assert abs(gain_db(shelf_hz) - 8.0) < 0.2 and abs(gain_db(flat_hz)) < 0.2
    assert abs(gain_db(corner) - 4.0) < 0.2          # half the shelf's gain (in dB) at its corner


def _main_frequency(crop: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(crop * np.hanning(len(crop))))
    return float(np.fft.rfftfreq(len(crop), 1 / 16000)[np.argmax(spectrum)])


@pytest.mark.parametrize("speed", [0.8, 1.25])
def test_speed_perturbation_shifts_pitch_and_keeps_length(tmp_path, speed):
    write_audio(tmp_path / "tone.wav", tone(2.0, 16000, 400), 16000)
    data = RandomCropDataset(tmp_path, 16000, 8000, augmentation=Augmentation(
        speed_probability=1.0, speed_range=(speed, speed)))
    crops = data.batch(3).numpy()[:, 0]
    assert crops.shape == (3, 8000)
    for crop in crops:
        assert abs(_main_frequency(crop) - 400 * speed) < 4     # 2 Hz FFT bins
        assert np.sqrt(np.mean(crop[-400:] ** 2)) > 0.5 * np.sqrt(np.mean(crop ** 2))   # no silent tail



def test_synthetic_tones_are_a_few_lines_in_silence():
    rng = np.random.default_rng(1)
    for _ in range(20):
        tones = synthetic_tones(16000, 16000, rng)
        assert tones.dtype == np.float32 and np.abs(tones).max() == pytest.approx(1.0)
        sounding = np.flatnonzero(tones)
        assert 0.25 * 16000 - 2 <= sounding[-1] - sounding[0] + 1 <= 16000
        assert not tones[:sounding[0]].any() and not tones[sounding[-1] + 1:].any()   # digital silence around
    steady = next(t for t in (synthetic_tones(16000, 16000, rng) for _ in range(50))
                  if np.count_nonzero(t) > 15000)
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(16000)))
    assert np.sort(spectrum)[-200:].sum() > 0.9 * spectrum.sum()   # a few lines (or sweeps), not noise


def test_tones_go_over_the_crop_or_replace_it(folder):
    crops = RandomCropDataset(folder, 16000, 8000, seed=5, augmentation=Augmentation(tone_probability=1.0)
                              ).batch(32).numpy()[:, 0]
    clean = RandomCropDataset(folder, 16000, 8000, seed=5).batch(32).numpy()[:, 0]
    assert np.all(np.isfinite(crops)) and not np.allclose(crops, clean)
    silent_edges = [(c[:40] == 0).all() or (c[-40:] == 0).all() for c in crops]   # tones alone: silence around
    assert 4 <= sum(silent_edges) <= 28


def test_training_audio_cut_short_or_shorter_than_a_crop_is_warned_of(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    whole = write_audio(tmp_path / "whole.wav", tone(1.0, 16000), 16000, subtype="PCM_16")
    (folder / "cut.wav").write_bytes(whole.read_bytes()[:1044])   # header + 500 of 16000 samples
    warnings = RandomCropDataset(folder, 16000, 8000).warnings()
    assert len(warnings) == 2
    assert "1 training file(s) hold less audio than their header announces" in warnings[0]
    assert "cut.wav (500 of 16000 samples)" in warnings[0]
    assert "lasts 0.03 s, less than one crop (0.5 s, data.segment_seconds)" in warnings[1]
    write_audio(folder / "long.wav", tone(1.0, 16000), 16000)
    warnings = RandomCropDataset(folder, 16000, 8000).warnings()   # enough audio, but one file is short
    assert len(warnings) == 2 and "1 of 2 training files are shorter than one crop (0.5 s, data.segment_seconds): " \
        "crops from them, 3% of all, are padded with silence" in warnings[1]
    (folder / "cut.wav").unlink()
    assert RandomCropDataset(folder, 16000, 8000).warnings() == []


def test_training_audio_below_the_model_rate_or_listed_twice_is_warned_of(tmp_path):
    """Upsampled files teach the model an empty top band; a manifest's repeated line weights its file."""
    write_audio(tmp_path / "narrow.wav", tone(1.0, 8000), 8000)
    write_audio(tmp_path / "wide.wav", tone(1.0, 16000), 16000)
    (tmp_path / "list.tsv").write_text("path\nnarrow.wav\nwide.wav\nwide.wav\n")
    warnings = RandomCropDataset(tmp_path / "list.tsv", 16000, 8000).warnings()
    assert warnings == [f"1 training file(s) have a sample rate below the model's 16000 Hz and are upsampled: they "
                        f"hold nothing above half their rate, and the model learns to leave that band empty; first: "
                        f"{tmp_path / 'narrow.wav'} (8000 Hz)",
                        f"1 training file(s) are listed more than once, and each listing counts (crops come from "
                        f"them that many times as often); first: {tmp_path / 'wide.wav'}"]
    assert RandomCropDataset(tmp_path / "wide.wav", 16000, 8000).warnings() == []


def test_an_unreadable_training_file_is_left_out_with_a_warning(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "fake.wav").write_bytes(b"not audio at all")
    with pytest.raises(CodecError, match=r"none of its audio files can be read; first: .*fake.wav: cannot read"):
        RandomCropDataset(folder, 16000, 8000)
    write_audio(folder / "good.wav", tone(1.0, 16000), 16000)
    dataset = RandomCropDataset(folder, 16000, 8000)
    assert len(dataset.clips) == 1
    assert dataset.warnings() == [f"1 training file(s) cannot be read and are left out, first: {folder / 'fake.wav'}"
                                  f": cannot read audio (Format not recognised.); supported: WAV, FLAC, OGG "
                                  f"(Vorbis, Opus), MP3, AIFF, CAF, W64"]


def test_very_quiet_training_files_among_speech_are_warned_of(tmp_path):
    # each crop is raised to the training level: a file of faint hiss becomes loud noise to learn
    # (digital silence stays silence, and is not counted)
    folder = tmp_path / "audio"
    folder.mkdir()
    write_audio(folder / "speech.wav", tone(1.0, 16000), 16000)
    assert RandomCropDataset(folder, 16000, 8000).warnings() == []
    hiss = 3e-5 * np.random.default_rng(0).standard_normal((16000, 1))   # about -90 dBFS RMS
    write_audio(folder / "hiss.wav", hiss, 16000, subtype="PCM_24")
    write_audio(folder / "zeros.wav", np.zeros((16000, 1)), 16000)
    warnings = RandomCropDataset(folder, 16000, 8000, level_db=(-30.0, -20.0)).warnings()
    assert warnings == [f"1 training file(s) are very quiet (peak below -60 dBFS, not digital silence), and each "
                        f"crop is raised to -30 to -20 dBFS RMS (data.level_db), by 30 dB or more, with their noise "
                        f"and rounding floor; first: {folder / 'hiss.wav'}"]
    other = tmp_path / "other"   # a short file's share that rounds to 0%
    other.mkdir()
    write_audio(other / "long.wav", tone(60.0, 16000), 16000)
    write_audio(other / "short.wav", tone(0.1, 16000), 16000)
    assert RandomCropDataset(other, 16000, 8000).warnings() == [
        "1 of 2 training files are shorter than one crop (0.5 s, data.segment_seconds): crops from them, under 1% "
        "of all, are padded with silence"]
