"""`codec stream`'s ONNX exports, kept between runs (codec.onnx.cache)."""

import copy
import json
import os

import numpy as np
import soundfile as sf

import codec.onnx.cache
from codec.models.loading import weights_hash
from codec.onnx.cache import KEPT_EXPORTS, MANIFEST, _digests, _prune, _publish, cache_root, export_folder
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
    assert entry.name.startswith(f"tiny-16k-{weights_hash(tiny_model_dir)[:16]}-float32-12cb-")   # (6 kbps)
    assert sorted(json.loads((entry / "codec.json").read_text())["graphs"]) == ["decoder", "encoder", "quantizer_12"]

    second, again = _stream(tiny_model_dir, tmp_path, "second")
    assert "exporting" not in second   # loaded from the cache
    np.testing.assert_array_equal(again, audio)

    graph = bytearray((entry / "decoder.onnx").read_bytes())   # damage that onnxruntime would still load
    graph[len(graph) // 2] ^= 1
    (entry / "decoder.onnx").write_bytes(bytes(graph))
    third, repaired = _stream(tiny_model_dir, tmp_path, "third")
    assert "exporting tiny-16k for onnxruntime again (the cached export in" in third
    assert "was damaged: its files do not match its cache.json" in third
    np.testing.assert_array_equal(repaired, audio)
    assert [p.name for p in (tmp_path / "cache" / "onnx").iterdir()] == [entry.name]   # (no hidden leftovers)


def test_a_cache_that_cannot_be_written_exports_for_the_one_run(tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("CODEC_CACHE_DIR", str(tmp_path / "a file" / "cache"))
    write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    output, audio = _stream(tiny_model_dir, tmp_path, "out")
    assert "exporting tiny-16k for onnxruntime, for this run only (cannot keep it in" in output
    assert "kept in" not in output
    assert len(audio) == 8000


def test_only_the_most_recently_used_exports_are_kept_and_nothing_else_is_touched(tmp_path):
    entries = []
    for age in range(KEPT_EXPORTS + 2):
        entry = tmp_path / f"model-{age:016x}-float32-12cb-{age:012x}"
        entry.mkdir()
        (entry / MANIFEST).write_text("{}")
        os.utime(entry / MANIFEST, (1e9 - age, 1e9 - age))
        entries.append(entry)
    (tmp_path / f"never-whole-{0:016x}-int8-6cb-{0:012x}").mkdir()   # (an entry without its cache.json)
    (tmp_path / "my-project").mkdir()   # (a user's own folder, there by mistake: never removed)
    (tmp_path / ".export.running.partial").mkdir()   # (another process's export, being written)
    (tmp_path / ".export.stopped.partial").mkdir()   # (a stopped export's, hours old)
    os.utime(tmp_path / ".export.stopped.partial", (1e9, 1e9))
    _prune(tmp_path, keep=entries[-1])   # the one just used (its cache.json not yet touched)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([".export.running.partial", "my-project", entries[-1].name]
                          + [e.name for e in entries[:KEPT_EXPORTS - 1]])


def test_of_two_exports_at_once_the_first_whole_one_is_kept(tmp_path):
    folder, theirs, ours = tmp_path / "entry", tmp_path / ".export.theirs.partial", tmp_path / ".export.ours.partial"
    for staging, graph in ((theirs, b"first"), (ours, b"second")):
        staging.mkdir()
        (staging / "decoder.onnx").write_bytes(graph)
        (staging / MANIFEST).write_text(json.dumps(_digests(staging)))
    _publish(theirs, folder)
    _publish(ours, folder)
    assert (folder / "decoder.onnx").read_bytes() == b"first"
    (folder / "decoder.onnx").write_bytes(b"damaged")   # a damaged entry is replaced
    _publish(ours, folder)
    assert (folder / "decoder.onnx").read_bytes() == b"second"


def test_an_entry_that_cannot_be_read_is_left_alone(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_CACHE_DIR", str(tmp_path / "cache"))
    write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    _, audio = _stream(tiny_model_dir, tmp_path, "first")
    [entry] = (tmp_path / "cache" / "onnx").iterdir()

    def unreadable(folder):   # (another user's entry: root reads every file, so the refusal is simulated)
        raise PermissionError(13, "Permission denied", str(folder / "decoder.onnx"))

    monkeypatch.setattr(codec.onnx.cache, "_digests", unreadable)
    output, again = _stream(tiny_model_dir, tmp_path, "second")
    assert f"for this run only (cannot read the cached export in {entry}: Permission denied)" in output
    np.testing.assert_array_equal(again, audio)
    assert [p.name for p in (tmp_path / "cache" / "onnx").iterdir()] == [entry.name]


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("CODEC_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert cache_root() == tmp_path / ".cache" / "codec"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "codec"
    monkeypatch.setenv("CODEC_CACHE_DIR", "~/mine")
    assert cache_root() == tmp_path / "mine"


def test_another_configuration_bitrate_or_int8_is_another_entry(tiny_model):
    changed = copy.deepcopy(tiny_model)
    changed.config.input_level_dbfs = -20.0   # (the same weights, configured otherwise)
    folders = {export_folder(tiny_model, False, 6), export_folder(tiny_model, True, 6),
               export_folder(changed, False, 6), export_folder(tiny_model, False, 12)}
    assert len(folders) == 4
    assert export_folder(copy.deepcopy(tiny_model), False, 6) == export_folder(tiny_model, False, 6)
