"""`codec stream`'s ONNX exports, kept between runs (codec.onnx.cache)."""

import os

import numpy as np
import soundfile as sf

from codec.models.loading import weights_hash
from codec.onnx.cache import KEPT_EXPORTS, _prune
from tests.conftest import run_cli, tone, write_audio


def _stream(model_dir, tmp_path, name: str):
    out = tmp_path / f"{name}.wav"
    result = run_cli("stream", "--input", tmp_path / "in.wav", "--output", out, "--model", model_dir, "--fast")
    assert result.exit_code == 0, result.output
    return result.output, sf.read(str(out))[0]


def test_stream_exports_a_model_once_and_again_when_its_export_is_damaged(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_CACHE_DIR", str(tmp_path / "cache"))
    write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    first, audio = _stream(tiny_model_dir, tmp_path, "first")
    assert "exporting tiny-16k for onnxruntime (once for these weights" in first
    [entry] = (tmp_path / "cache" / "onnx").iterdir()
    assert entry.name.startswith(f"tiny-16k-{weights_hash(tiny_model_dir)[:16]}-float32-")

    second, again = _stream(tiny_model_dir, tmp_path, "second")
    assert "exporting" not in second   # loaded from the cache
    np.testing.assert_array_equal(again, audio)

    (entry / "decoder.onnx").write_bytes(b"not a graph")
    third, repaired = _stream(tiny_model_dir, tmp_path, "third")
    assert "exporting tiny-16k" in third
    np.testing.assert_array_equal(repaired, audio)


def test_a_cache_that_cannot_be_written_exports_for_the_one_run(tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("CODEC_CACHE_DIR", str(tmp_path / "a file" / "cache"))
    write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    output, audio = _stream(tiny_model_dir, tmp_path, "out")
    assert "exporting tiny-16k for onnxruntime (for this run: the cache cannot be written)" in output
    assert len(audio) == 8000


def test_only_the_most_recently_used_exports_are_kept(tmp_path):
    entries = []
    for age in range(KEPT_EXPORTS + 2):
        entry = tmp_path / f"model-{age}"
        entry.mkdir()
        (entry / "codec.json").write_text("{}")
        os.utime(entry / "codec.json", (1e9 - age, 1e9 - age))
        entries.append(entry)
    (tmp_path / "being-written").mkdir()   # (another process's export, without its codec.json yet)
    _prune(tmp_path, keep=entries[-1])   # the one just used (its codec.json not yet touched)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(["being-written", entries[-1].name] + [e.name for e in entries[:KEPT_EXPORTS - 1]])
