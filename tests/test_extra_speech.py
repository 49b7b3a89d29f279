"""scripts/extra_speech.py: packaged Ogg clips become 16 kHz mono FLAC training files and manifests
(the Debian downloads themselves need the network and are not tested)."""

import sys

import numpy as np
import soundfile as sf

from codec.datasets import find_inputs
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import extra_speech  # noqa: E402  (a script, imported from its folder)


def ogg(path, seconds, rate=22050, channels=2, amplitude=0.3):
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * 220 * t)
    sf.write(str(path), np.repeat(tone[:, None], channels, axis=1), rate, format="OGG", subtype="VORBIS")
    return path


def test_a_clip_becomes_16_khz_mono_flac_and_short_or_silent_ones_are_dropped(tmp_path):
    target = tmp_path / "out" / "a" / "speech.flac"
    seconds = extra_speech.convert(ogg(tmp_path / "speech.ogg", 1.2), target)
    info = sf.info(str(target))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(seconds - 1.2) < 0.01 and abs(info.duration - seconds) < 1e-3
    assert extra_speech.convert(ogg(tmp_path / "short.ogg", 0.3), tmp_path / "out" / "short.flac") is None
    assert extra_speech.convert(ogg(tmp_path / "quiet.ogg", 1.0, amplitude=1e-4), tmp_path / "out" / "q.flac") is None
    (tmp_path / "broken.ogg").write_bytes(b"not an ogg file")
    assert extra_speech.convert(tmp_path / "broken.ogg", tmp_path / "out" / "broken.flac") is None
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.flac")) == ["speech.flac"]


def test_manifests_list_the_clips_and_each_also_folder_as_often_as_given(tmp_path):
    out, train = tmp_path / "out", tmp_path / "train"
    train.mkdir()
    sf.write(str(train / "t.flac"), np.zeros(16000), 16000)
    clip = out / "pkg" / "c.flac"
    clip.parent.mkdir(parents=True)
    sf.write(str(clip), np.zeros(16000), 16000)
    extra_speech.write_manifests(out, [(clip, 1.0, "pkg")], [train, train])
    assert find_inputs(out / "manifest.tsv") == [clip]
    listed = find_inputs(out / "with_train.tsv")
    assert listed == [clip.resolve(), (train / "t.flac").resolve(), (train / "t.flac").resolve()]
