"""Latent refinement (analysis by synthesis, codec/refine.py): decoded audio closer to the input
at the same bitrate, ordinary codes, no change to the model, block seams, and its errors."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import codec.streaming
from codec.coding import corrected_gain_db, decode_audio, encode_audio
from codec.errors import CodecError
from codec.evaluation.evaluate import EvalSettings, build_systems
from codec.models import ConvCodec, EscCodec, save_model
from codec.refine import STEP_SIZE, LatentRefiner, Objective, check_refine_steps
from codec.train import load_recipe
from tests.conftest import REPO, run_cli, write_audio
from tests.test_esc import TINY


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """``[T, 1]`` at 16 kHz: a gliding harmonic tone with a syllable-rate envelope, and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 16000)) / 16000
    pitch = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / 16000
    voiced = sum(np.sin(k * pitch) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.1 * envelope * voiced + 0.003 * rng.standard_normal(len(t)))[:, None]


def _distance(decoded: np.ndarray, audio: np.ndarray) -> float:
    """The refiner's own distance (log-mel + PESQ and STOI terms) over the whole signal."""
    loss = Objective(16000)
    signals = [torch.from_numpy(np.ascontiguousarray(a[:, 0], dtype=np.float32))[None, None] for a in (decoded, audio)]
    return float(loss(*signals))


@pytest.fixture(scope="module", params=["esc", "conv"])
def model(request):
    torch.manual_seed(0)
    if request.param == "esc":
        return EscCodec(TINY).eval()
    return ConvCodec(load_recipe(REPO / "recipes" / "tiny.yaml").model).eval()


def test_refined_codes_decode_closer_to_the_input_at_the_same_bitrate(model):
    audio = _speechlike(1.5)
    kbps = model.config.bitrates_kbps[-1]
    plain = encode_audio(model, audio, 16000, kbps)
    refined = encode_audio(model, audio, 16000, kbps, refine_steps=30)
    assert refined.codes.shape == plain.codes.shape
    assert dataclasses.replace(refined.metadata, gain_db=None) == plain.metadata   # (the gain: see below)
    assert not np.array_equal(refined.codes, plain.codes)
    before = _distance(decode_audio(model, plain)[0], audio)
    after = _distance(decode_audio(model, refined)[0], audio)
    assert after < 0.97 * before, (before, after)


def test_refined_codes_carry_a_gain_that_brings_their_decoding_to_the_inputs_level():
    # the PESQ and STOI terms ignore level, so refinement moves it; the file's gain takes it back off
    # (the tiny ESC model's output follows its input's level; the tiny conv model's barely does)
    torch.manual_seed(0)
    model = EscCodec(TINY).eval()
    kbps = model.config.bitrates_kbps[-1]

    def level_db(signal):
        return 10 * np.log10(np.mean(np.square(signal), axis=0))

    # two channels at different levels; and a clip of 0.25 s, whose frames' seams and onset weigh more
    for audio in (np.concatenate([_speechlike(1.2, seed=1), 0.2 * _speechlike(1.2, seed=2)], axis=1),
                  _speechlike(0.25, seed=5)):
        refined = encode_audio(model, audio, 16000, kbps, refine_steps=6)
        decoded = decode_audio(model, refined)[0]
        uncorrected = decode_audio(model, dataclasses.replace(refined, metadata=dataclasses.replace(
            refined.metadata, gain_db=None)))[0]
        assert np.size(refined.metadata.gain_db) == audio.shape[1]
        assert np.all(np.abs(level_db(decoded) - level_db(audio)) < 0.1), (level_db(decoded), level_db(audio))
        assert np.all(np.abs(level_db(uncorrected) - level_db(audio)) > 1.0)   # the tiny model is far off


def test_a_gain_correction_keeps_one_gain_where_the_channels_agree():
    assert corrected_gain_db(3.0, np.array([0.5, 0.5])) == 3.5
    assert corrected_gain_db([3.0, -2.0], np.array([0.5, 0.25])) == [3.5, -1.75]
    assert corrected_gain_db(59.5, np.array([1.234])) == 60.0


def test_the_objective_adds_pesq_and_stoi_terms_to_the_log_mel_distance():
    audio = torch.from_numpy(_speechlike(1.0)[:, 0]).float()[None, None]
    noisy = audio + 0.01 * torch.randn_like(audio)
    objective = Objective(16000)
    assert objective.min_samples == 6355                 # STOI's 30 frames of 25.6 ms, half overlapping
    assert float(objective(noisy, audio)) > float(objective.mel(noisy, audio)) + 1e-3
    assert float(objective(audio, audio)) < 1e-3
    narrowband = Objective(8000)                         # STOI's bands need 9 kHz: log-mel alone
    assert narrowband.terms == [] and narrowband.min_samples == 2048
    assert float(narrowband(noisy, audio)) == float(narrowband.mel(noisy, audio))


def test_refinement_leaves_the_model_as_it_was(model):
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    grad_mode = torch.is_grad_enabled()
    encode_audio(model, _speechlike(0.5), 16000, model.config.bitrates_kbps[0], refine_steps=3)
    assert not model.training
    for name, p in model.named_parameters():
        assert p.grad is None and torch.equal(p, weights[name]), name
    assert torch.is_grad_enabled() == grad_mode


def test_zero_steps_give_the_plain_codes(model):
    audio = _speechlike(0.7)
    kbps = model.config.bitrates_kbps[0]
    assert np.array_equal(encode_audio(model, audio, 16000, kbps, refine_steps=0).codes,
                          encode_audio(model, audio, 16000, kbps).codes)


def test_a_long_signal_is_refined_block_by_block_across_the_seams(model, monkeypatch):
    # 4 blocks of 0.5 s (the CLI's are 10 s): every block, the seams included, comes out closer
    monkeypatch.setattr("codec.coding.BLOCK_SECONDS", 0.5)
    audio = _speechlike(2.0, seed=1)
    kbps = model.config.bitrates_kbps[-1]
    plain, _ = decode_audio(model, encode_audio(model, audio, 16000, kbps))
    refined, _ = decode_audio(model, encode_audio(model, audio, 16000, kbps, refine_steps=20))
    assert refined.shape == audio.shape
    for start in range(0, 32000, 8000):
        span = slice(max(0, start - 2048), start + 8000)
        assert _distance(refined[span], audio[span]) < _distance(plain[span], audio[span]), start


def test_a_stream_shorter_than_the_longest_loss_window_is_refined():
    torch.manual_seed(0)
    esc = EscCodec(TINY).eval()
    audio = _speechlike(0.05)            # 800 samples: less than the loss's 2048-sample window and 0.4 s STOI
    codes = encode_audio(esc, audio, 16000, 1.2, refine_steps=5)
    assert decode_audio(esc, codes)[0].shape == audio.shape


def test_refinement_runs_under_the_callers_inference_mode():
    torch.manual_seed(0)
    esc = EscCodec(TINY).eval()
    with torch.inference_mode():
        codes = encode_audio(esc, _speechlike(0.5), 16000, 1.2, refine_steps=3)
    assert codes.codes.shape[1] == 4


@pytest.mark.parametrize("steps", [-1, 1001, 2.5, "3", True, None, 0.0])
def test_steps_that_are_not_a_whole_number_in_range_are_refused(steps, model):
    with pytest.raises(CodecError, match="refinement steps must be a whole number from 0 \\(off\\) to 1000"):
        check_refine_steps(steps)
    with pytest.raises(CodecError, match="refinement steps must be a whole number"):   # falsy ones too
        encode_audio(model, _speechlike(0.1), 16000, model.config.bitrates_kbps[0], refine_steps=steps)
    check_refine_steps(np.int64(3))   # numpy's integers are whole numbers too


def test_a_model_in_training_mode_or_loaded_in_inference_mode_is_refused():
    torch.manual_seed(0)
    with pytest.raises(CodecError, match="training mode; call .eval\\(\\)"):
        check_refine_steps(3, EscCodec(TINY).train())
    with torch.inference_mode():
        loaded = EscCodec(TINY).eval()
    with pytest.raises(CodecError, match="loaded under torch.inference_mode"):
        encode_audio(loaded, _speechlike(0.3), 16000, 1.2, refine_steps=3)


def test_refinement_never_ends_farther_from_the_input_than_it_started(model):
    # one large first step overshoots at a low bitrate; the refiner then keeps the encoder's latent
    refiner = LatentRefiner(model, model.codebooks_for_bitrate(model.config.bitrates_kbps[0]), steps=1)
    audio = torch.from_numpy(_speechlike(0.64, seed=2)[:, 0]).float()[None, None].repeat(2, 1, 1)
    audio[1] *= 0.1                                     # a second channel at another level
    with torch.no_grad():
        latent = model.encode_latent(audio)
    frames = latent.shape[-1]
    audio = audio[..., :frames * model.frame_size]
    for size in (STEP_SIZE, 3.0):                       # the default step, and one far too large
        refiner.reset()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("codec.refine.STEP_SIZE", size)
            refined = refiner(latent, audio)
        refiner._context = latent[..., :0]              # score both from the start of the stream
        with torch.no_grad():
            before, after = (refiner._item_losses(x, audio, 0) for x in (latent, refined))
        assert torch.all(after <= before + 1e-6), (size, before, after)


def test_each_channel_is_refined_on_its_own():
    torch.manual_seed(0)
    esc = EscCodec(TINY).eval()
    left, right = _speechlike(0.6, seed=3), 0.05 * _speechlike(0.6, seed=4)
    alone = encode_audio(esc, left, 16000, 1.2, refine_steps=8).codes[0]
    together = encode_audio(esc, np.concatenate([left, right], axis=1), 16000, 1.2, refine_steps=8).codes[0]
    assert (alone == together).mean() > 0.95      # the same up to float rounding in batched products


def test_channels_coded_in_separate_sessions_each_keep_their_own_refined_context(monkeypatch):
    # a file's channels are coded in groups (CHANNEL_GROUP); one refiner shared by the groups mixed
    # their context frames (and failed outright where the groups differ in size)
    monkeypatch.setattr(codec.streaming, "CHANNEL_GROUP", 2)
    torch.manual_seed(0)
    esc = EscCodec(TINY).eval()
    channels = np.concatenate([_speechlike(0.6, seed=seed) * gain
                               for seed, gain in ((3, 1), (4, 0.3), (5, 0.1))], axis=1)
    together = encode_audio(esc, channels, 16000, 1.2, refine_steps=4).codes
    alone = encode_audio(esc, channels[:, 2:], 16000, 1.2, refine_steps=4).codes[0]
    assert together.shape[0] == 3 and (together[2] == alone).mean() > 0.95


def test_a_model_with_a_global_code_is_refused_before_any_work():
    config = dataclasses.replace(load_recipe(REPO / "recipes" / "tiny.yaml").model, name="tiny-global",
                                 global_groups=2, global_dim=8, global_codebook_size=64, global_seconds=0.5)
    model = ConvCodec(config).eval()
    with pytest.raises(CodecError, match="global code \\(TiCodec\\), and latent refinement works only"):
        encode_audio(model, _speechlike(0.5), 16000, model.config.bitrates_kbps[0], refine_steps=3)
    check_refine_steps(0, model)        # off: fine


def test_cli_encodes_with_refinement_and_refuses_bad_steps(tmp_path):
    torch.manual_seed(0)
    model_dir = save_model(EscCodec(TINY).eval(), tmp_path / "esc-tiny")
    source = write_audio(tmp_path / "in.wav", _speechlike(0.6)[:, 0], 16000)
    result = run_cli("encode", source, tmp_path / "out.codes", "--model", model_dir, "--bitrate", "1.2",
                     "--refine-steps", "4")
    assert result.exit_code == 0, result.output
    assert run_cli("decode", tmp_path / "out.codes", tmp_path / "out.wav", "--model", model_dir).exit_code == 0
    bad = run_cli("encode", source, tmp_path / "bad.codes", "--model", model_dir, "--bitrate", "1.2",
                  "--refine-steps", "-3")
    assert bad.exit_code != 0 and "--refine-steps: refinement steps must be a whole number from 0 (off) to 1000, " \
        "got -3" in bad.output
    assert not (tmp_path / "bad.codes").exists()


def test_eval_adds_refined_rows(tmp_path):
    torch.manual_seed(0)
    model_dir = save_model(EscCodec(TINY).eval(), tmp_path / "esc-tiny")
    systems, _ = build_systems(EvalSettings(str(model_dir), [1.2], refine_steps=7))
    assert [(s.name, s.setting) for s in systems] == [
        ("esc-tiny", "4 codebooks"), ("esc-tiny+refined", "4 codebooks, 7 refinement steps")]
    systems, _ = build_systems(EvalSettings(str(model_dir), [1.2], refine_steps=1))
    assert systems[-1].setting == "4 codebooks, 1 refinement step"
    bad = run_cli("eval", tmp_path, "--model", model_dir, "--refine-steps", "5000", "--out", tmp_path / "ev")
    assert bad.exit_code != 0 and "--refine-steps" in bad.output


def _summary(system: str, pesq: float, stoi: float) -> dict:
    return {"system": system, "setting": "x", "nominal_kbps": 6.0, "files": 2, "measured_kbps": 6.3,
            "overhead_kbps": 0.3, "encode_rtf": 2.5, "decode_rtf": 0.01, "mean": {"pesq_wb": pesq, "stoi": stoi},
            "ci95": {"pesq_wb": 0.1, "stoi": 0.01}, "undefined": {}}


def test_the_model_card_gets_one_refinement_section_with_paired_differences(tmp_path, tiny_model_dir):
    ship = shutil.copytree(tiny_model_dir, tmp_path / "ship")
    (ship / "README.md").write_text("# tiny-16k\n\n## Measured quality\n\n| table |\n\nSpeed: encode + decode: fast.\n")
    (ship / "metrics.json").write_text("{}")
    files = [{"path": path, "system": system, "nominal_kbps": 6.0, "scores": {"pesq_wb": pesq, "stoi": 0.9}}
             for path, system, pesq in [("a", "tiny-16k", 2.0), ("b", "tiny-16k", 3.0),
                                        ("a", "tiny-16k+refined", 2.5), ("b", "tiny-16k+refined", 3.1)]]
    results = {"settings": {"refine_steps": 60, "inputs": ["dev"], "files": 2}, "notes": [], "files": files,
               "summary": [_summary("tiny-16k", 2.5, 0.9), _summary("tiny-16k+refined", 2.8, 0.9)]}
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "results.json").write_text(json.dumps(results))
    script = [sys.executable, str(REPO / "scripts" / "write_model_card.py"), "--refinement", str(tmp_path / "ev"),
              "--refinement-other", str(tmp_path / "ev"), str(ship)]   # (as codec eval writes its inputs now)
    for _ in range(2):   # a second run replaces the section
        done = subprocess.run(script, capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr
    card = (ship / "README.md").read_text()
    assert card.count("## Latent refinement") == 1 and card.index("## Latent refinement") < card.index("Speed:")
    assert "On speech from other corpora (`dev`, 2 files)" in card
    assert "| 6 | 6.30 | 2.50 | 2.80 | +0.30 ± 2.54 (2 of 2) |" in card  # mean (0.5+0.1)/2; t(.975, 1)=12.71 x 0.2
    refined = json.loads((ship / "metrics.json").read_text())["refined"]
    assert refined["steps"] == 60 and refined["dev"][0]["pesq_wb"]["difference"] == pytest.approx(0.3)
    # --speed-only on a card without its speed paragraph: refused before measuring, both files as they were
    metrics = (ship / "metrics.json").read_text()
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "write_model_card.py"), "--speed-only", str(ship)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1 and "README.md: no speed paragraph to replace" in done.stderr, done.stderr
    assert (ship / "metrics.json").read_text() == metrics and (ship / "README.md").read_text() == card


def test_refinement_holds_the_models_lock_so_other_threads_wait(monkeypatch):
    # the refiner runs the shared modules outside a session; another thread's session, swapping
    # its state into them meanwhile, changed both threads' codes (a review found 39-94 codes apart)
    import threading

    from codec.streaming import _model_lock

    model = EscCodec(TINY).eval()
    taken_elsewhere = []
    refine = LatentRefiner.__call__

    def refine_and_probe(self, latent, audio):
        def probe():   # another thread tries the lock that sessions take
            lock = _model_lock(model)
            taken_elsewhere.append(lock.acquire(blocking=False))
            if taken_elsewhere[-1]:
                lock.release()
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join()
        return refine(self, latent, audio)

    monkeypatch.setattr(LatentRefiner, "__call__", refine_and_probe)
    encode_audio(model, _speechlike(0.5), 16000, model.config.bitrates_kbps[0], refine_steps=2)
    assert taken_elsewhere and not any(taken_elsewhere)


def test_the_refiners_adam_steps_as_torchs_adam_with_a_cosine_schedule():
    from codec.refine import _Adam

    torch.manual_seed(0)
    start, gradients = torch.randn(3, 4), [torch.randn(3, 4) for _ in range(5)]
    ours, theirs = start.clone(), start.clone().requires_grad_(True)
    adam = _Adam(ours, len(gradients))
    optimizer = torch.optim.Adam([theirs], lr=STEP_SIZE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, len(gradients))
    for gradient in gradients:
        adam.step(gradient)
        theirs.grad = gradient
        optimizer.step()
        schedule.step()
        assert torch.allclose(ours, theirs.detach(), atol=1e-7), (ours - theirs).abs().max()
    assert not torch.allclose(ours, start)
