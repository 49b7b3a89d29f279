"""Training: a tiny recipe trains, checkpoints, resumes and exports a loadable model."""

import io
import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from rich.console import Console

from codec.errors import CodecError, TrainingStopped
from codec.models import load_model
from codec.train import load_recipe, train
from codec.train.data import RandomCropDataset
from codec.train.trainer import CHECKPOINT_FILE
from tests.conftest import REPO, tone, write_audio


@pytest.fixture
def audio_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio" / "nested"
    folder.mkdir(parents=True)
    for i in range(4):
        t = np.arange(int(rng.uniform(0.3, 1.5) * 16000)) / 16000
        signal = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(len(t))
        write_audio(folder / f"clip{i}.wav", signal, 16000)
    write_audio(folder / "hi.flac", rng.standard_normal(44100) * 0.1, 44100)
    return tmp_path / "audio"


def tiny(audio_folder, out_dir, *extra):
    return load_recipe(REPO / "recipes" / "tiny.yaml",
                       [f"data.train_dir={audio_folder}", f"run.out_dir={out_dir}", *extra])


def test_model_and_loss_problems_are_found_before_the_data_loads(tmp_path):
    """A large training set takes minutes to load: the folder here does not even exist."""
    missing = tmp_path / "no-data"
    with pytest.raises(CodecError, match=r"run.init_from: .*nothere/model: no such model directory"):
        train(tiny(missing, tmp_path / "a", f"run.init_from={tmp_path / 'nothere' / 'model'}"))
    with pytest.raises(CodecError, match=r"loss.mel_bins=.*: 97954 of the 100000 mel bands of the 2048-sample "
                                         r"window hold no frequency bin"):
        train(tiny(missing, tmp_path / "b", "loss.mel_bins=[8,16,32,64,128,100000]"))


def test_tiny_recipe_trains_and_resumes(audio_folder, tmp_path):
    out_dir = tmp_path / "run"
    first = io.StringIO()
    train(tiny(audio_folder, out_dir, "run.max_steps=12"), console=Console(file=first, width=400))
    assert "finished at step 12 (run.max_steps)" in first.getvalue()   # its own end, not an interruption
    state = torch.load(out_dir / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == 12
    assert state["recipe"]["run"]["max_steps"] == 12          # the resolved config is stored
    assert state["recipe"]["model"]["name"] == "tiny-16k"
    log = (out_dir / "train.log").read_text().splitlines()
    assert len(log) == 3 and '"perplexity_min"' in log[0]   # steps 5 and 10 (log_every), and the last, 12

    with pytest.raises(CodecError, match="--resume"):
        train(tiny(audio_folder, out_dir, "run.max_steps=12"))
    cleaned = tmp_path / "cleaned"   # a finished run whose checkpoint was deleted: its model is not overwritten
    (cleaned / "model").mkdir(parents=True)
    (cleaned / "model" / "model.safetensors").write_bytes((out_dir / "model" / "model.safetensors").read_bytes())
    with pytest.raises(CodecError, match="holds a trained model .* and no checkpoint"):
        train(tiny(audio_folder, cleaned, "run.max_steps=1"))
    users = tmp_path / "users"   # a folder of the user's own that happens to have a model/ with files in it
    (users / "model").mkdir(parents=True)
    (users / "model" / "config.json").write_text('{"mine": 1}')
    with pytest.raises(CodecError, match="model exists and is not empty"):
        train(tiny(audio_folder, users, "run.max_steps=1"))
    assert (users / "model" / "config.json").read_text() == '{"mine": 1}'
    with open(out_dir / "train.log", "a") as log:   # a run killed at step 15, after its checkpoint at 12
        log.write('{"step": 15, "unsaved": true}\n')
    train(tiny(audio_folder, out_dir, "run.max_steps=20"), resume=True)
    assert torch.load(out_dir / CHECKPOINT_FILE, weights_only=True)["step"] == 20
    log = [json.loads(line) for line in (out_dir / "train.log").read_text().splitlines()]
    assert [record["step"] for record in log] == [5, 10, 12, 15, 20] and "unsaved" not in log[3]
    finished = (out_dir / CHECKPOINT_FILE).read_bytes()
    report = io.StringIO()   # a finished run: nothing trains, and its checkpoint (and recipe) stay as they are
    train(tiny(audio_folder, out_dir, "run.max_steps=20", "loss.stft_weight=3"), resume=True,
          console=Console(file=report, width=400))
    assert "nothing to train" in report.getvalue() and (out_dir / CHECKPOINT_FILE).read_bytes() == finished
    model = load_model(out_dir / "model")
    assert model.config.name == "tiny-16k"
    config_mode = (out_dir / "model" / "config.json").stat().st_mode & 0o777
    assert (out_dir / "model" / "model.safetensors").stat().st_mode & 0o777 == config_mode   # others may read both


def test_a_fresh_run_keeps_an_earlier_runs_log_apart(audio_folder, tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "train.log").write_text('{"step": 50, "earlier": true}\n')     # a run stopped before saving
    (out_dir / "tensorboard").mkdir()
    (out_dir / "tensorboard" / "events.out.tfevents.earlier").write_bytes(b"")
    report = io.StringIO()
    train(tiny(audio_folder, out_dir, "run.max_steps=12"), console=Console(file=report, width=400))
    assert "earlier" not in (out_dir / "train.log").read_text()
    assert (out_dir / "train.log.1").read_text() == '{"step": 50, "earlier": true}\n'
    # its TensorBoard events too: one folder of events would draw both runs' curves as one
    assert [p.name for p in (out_dir / "tensorboard.1").iterdir()] == ["events.out.tfevents.earlier"]
    assert "earlier" not in " ".join(p.name for p in (out_dir / "tensorboard").iterdir())
    assert "kept train.log as train.log.1 and tensorboard as tensorboard.1" in report.getvalue()
    (out_dir / CHECKPOINT_FILE).unlink()      # and again: .1 is taken, and .2 is a dangling link, so .3
    for path in (out_dir / "model").iterdir():   # (a run never overwrites a trained model)
        path.unlink()
    (out_dir / "train.log.2").symlink_to(tmp_path / "nowhere")
    train(tiny(audio_folder, out_dir, "run.max_steps=12"))
    assert (out_dir / "train.log.3").is_file() and (out_dir / "train.log.2").is_symlink()
    assert (out_dir / "tensorboard.3").is_dir() and not (out_dir / "tensorboard.2").exists()


def test_a_resumed_run_hides_the_tensorboard_steps_logged_after_its_checkpoint(audio_folder, tmp_path, monkeypatch):
    """As train.log leaves them out: a run killed between checkpoints trains those steps again."""
    import torch.utils.tensorboard

    purged = []
    writer = torch.utils.tensorboard.SummaryWriter
    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter",
                        lambda *args, purge_step=None, **kwargs: purged.append(purge_step) or writer(*args, **kwargs))
    out_dir = tmp_path / "run"
    train(tiny(audio_folder, out_dir, "run.max_steps=4"))
    train(tiny(audio_folder, out_dir, "run.max_steps=6"), resume=True)
    assert purged == [None, 5]   # step 4 was logged before its checkpoint: kept, as in train.log
    assert [json.loads(line)["step"] for line in (out_dir / "train.log").read_text().splitlines()] == [4, 5, 6]


def test_a_train_log_that_is_not_a_file_is_refused(audio_folder, tmp_path):
    out_dir = tmp_path / "run"
    (out_dir / "train.log").mkdir(parents=True)
    with pytest.raises(CodecError, match=r"train.log is not a file: move it away or set another run.out_dir"):
        train(tiny(audio_folder, out_dir, "run.max_steps=2"))
    # a user's own files of those names are not set aside as "an earlier run's logs"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.log").write_text("my notes\n")
    with pytest.raises(CodecError, match=r"train.log is not a training log \(its first line is no logged step\)"):
        train(tiny(audio_folder, mine, "run.max_steps=2"))
    (mine / "train.log").unlink()
    (mine / "tensorboard").write_text("mine\n")
    with pytest.raises(CodecError, match=r"tensorboard is not a folder \(a run writes its TensorBoard logs there\)"):
        train(tiny(audio_folder, mine, "run.max_steps=2"))
    assert (mine / "tensorboard").read_text() == "mine\n" and sorted(p.name for p in mine.iterdir()) == ["tensorboard"]


def test_training_reduces_the_loss(audio_folder, tmp_path):
    out_dir = tmp_path / "run"
    train(tiny(audio_folder, out_dir, "run.max_steps=60", "run.log_every=20", "optim.lr=3e-3"))
    losses = [json.loads(line)["mel"] for line in (out_dir / "train.log").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_overrides_of_names_and_paths_are_text():
    """YAML would read model.name=on as true and run.out_dir=~ as null; a text value is the text
    (and ~ in a path the home folder, as a shell reads it)."""
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", ["model.name=on", "run.out_dir=~", "run.init_from=2024",
                                                          "data.train_dir=a: b", "run.seed=7"])
    assert (recipe.model.name, recipe.run.out_dir, recipe.run.init_from) == ("on", os.path.expanduser("~"), "2024")
    assert recipe.data.train_dir == "a: b" and recipe.run.seed == 7
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ["run.init_from=null"]).run.init_from is None
    with pytest.raises(CodecError, match=r"override 'run.out_dir=null': run.out_dir cannot be null, as in a recipe "
                                         r"file"):   # (a folder named null was made)
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.out_dir=null"])
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ['run.out_dir="null"']).run.out_dir == "null"
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ['model.name="x"']).model.name == "x"
    entropy = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", ["data.codec_model=2024", "entropy.name=no"])
    assert (entropy.data.codec_model, entropy.entropy.name) == ("2024", "no")


def test_recipe_errors(tmp_path):
    with pytest.raises(CodecError, match=r"override 'model.colour=blue': unknown key in recipe section 'model': "
                                         r"model.colour; its keys are name, sample_rate, "):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["model.colour=blue"])
    with pytest.raises(CodecError, match=r"run.max_steps='abc' must be int"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=abc"])
    with pytest.raises(CodecError, match=r"run.max_steps=-1 must be at least 0"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=-1"])
    # a whole number in any notation is an int (YAML 1.1 reads 1e3 as a string), a fraction is not
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=1e3"]).run.max_steps == 1000
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=2000.0"]).run.max_steps == 2000
    with pytest.raises(CodecError, match=r"run.max_steps=1500.5 must be int"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=1500.5"])
    with pytest.raises(CodecError, match=r"run.max_steps='inf' must be int"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=inf"])
    for override in ("nonsense", ".x=1", "run.=1"):   # (an empty name was "unknown recipe sections: ")
        with pytest.raises(CodecError, match=f"override '{re.escape(override)}' must look like section.key=value"):
            load_recipe(REPO / "recipes" / "tiny.yaml", [override])
    with pytest.raises(CodecError, match=re.escape("override 'max_steps=3' must look like section.key=value (did you "
                                                   "mean run.max_steps=3?)")):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["max_steps=3"])
    with pytest.raises(CodecError, match=re.escape("(did you mean entropy.name=x?)")):   # an entropy recipe's own
        load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", ["name=x"])
    with pytest.raises(CodecError, match=re.escape("data.dev_dir (an entropy-model recipe's key: codec training "
                                                   "holds no files out; score the trained model")):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["data.dev_dir=held_out"])
    assert load_recipe(REPO / "recipes" / "tiny.yaml", [" run.max_steps = 7"]).run.max_steps == 7   # as typed
    for text in (f"inherit: {REPO / 'recipes' / 'tiny.yaml'}\nmax_steps: 10\n", "max_steps: 10\n"):
        (tmp_path / "top.yaml").write_text(text)   # a key at the top level, with and without a parent
        with pytest.raises(CodecError, match=r"'max_steps'.* \(did you mean run.max_steps\? put it under its section: "
                                             r"'run:', then '  max_steps: \.\.\.'\)"):
            load_recipe(tmp_path / "top.yaml")
    with pytest.raises(CodecError, match=r"override 'optim.freeze=\[encoder': the value is not valid YAML"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["optim.freeze=[encoder"])
    with pytest.raises(CodecError, match=r"^override 'entropy.dim=64' and .*: the recipe has an 'entropy' section .* "
                                         r"and codec sections \(loss, model\); a recipe trains a codec or an entropy "
                                         r"model, not both"):   # led by where the sections came from
        load_recipe(REPO / "recipes" / "tiny.yaml", ["entropy.dim=64"])
    with pytest.raises(CodecError, match="no audio files"):
        train(load_recipe(REPO / "recipes" / "tiny.yaml",
                          [f"data.train_dir={tmp_path}", f"run.out_dir={tmp_path / 'r'}"]))


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-1", r"optim.lr=-1.0 must be a finite number > 0"),
    ("optim.lr=.nan", r"optim.lr=nan must be a finite number > 0"),
    ("optim.grad_clip=0", r"optim.grad_clip=0.0 must be a finite number > 0"),
    ("optim.lr_decay=-1", r"optim.lr_decay=-1.0 must be in \(0, 1\]"),
    ("optim.weight_decay=-1", r"optim.weight_decay=-1.0 must be a number >= 0"),
    ("optim.warmup_steps=-3", r"optim.warmup_steps=-3 must be a number >= 0"),
    ("optim.betas=[0.9]", r"optim.betas=\[0.9\] must be two numbers in \[0, 1\)"),
    ("data.eq_probability=-1", r"data.eq_probability=-1.0 must be in \[0, 1\]"),
    ("data.noise_probability=2", r"data.noise_probability=2.0 must be in \[0, 1\]"),
    ("data.level_db=[-20]", r"data.level_db=\[-20\] must be \[low, high\]"),
    ("data.speed_probability=1.5", r"data.speed_probability=1.5 must be in \[0, 1\]"),
    ("data.speed_range=[0.3,1.0]", r"data.speed_range=\[0.3, 1.0\] must be \[low, high\] with 0.5 <= low"),
    ("data.speed_range=[1.1]", r"data.speed_range=\[1.1\] must be \[low, high\]"),
    ("data.speed_range=[a,b]", r"data.speed_range=\['a', 'b'\] must be a list of numbers"),
    ("data.shelf_gain_db=30", r"data.shelf_gain_db=30.0 must be at most 24 dB"),
    ("data.segment_seconds=1000", r"data.segment_seconds=1000.0 must be at most 30 s"),
    ("loss.codebook_choices=[48]", r"codebook_choices=\[48\] and loss.codebook_probs"),
    ("loss.codebook_choices=[3,6,12,48]", r"asks for more codebooks than the model has \(24: "
                                          r"model.num_codebooks=24\)"),
    ("loss.codebook_probs=[0,0,0,0]", r"loss.codebook_probs=\[0, 0, 0, 0\] must be weights"),
    ("loss.vq_gradient=sideways", r"loss.vq_gradient='sideways' is not supported: use one of straight_through, "
                                  r"rotation"),
    ("model.hop_length=0", r"model.hop_length=0 must be at least 1"),
    ("model.codebook_size=0", r"model.codebook_size=0 must be at least 2"),
    ("model.codebook_size=100000", r"model.codebook_size=100000 must be at most 65536 \(the .codes format"),
    ("data.noise_probability=0.5", r"data.noise_probability=0.5 mixes in noise, but data.noise_dir is not set"),
    ("data.noise_dir=noise/", r"data.noise_dir=noise/ gives noise, but data.noise_probability is 0, which mixes in "
                              r"none"),
    ("loss.mel_bins=[0,16,32,64,128,128]", r"loss.mel_bins=\[0, 16, 32, 64, 128, 128\] .* of mel bands >= 1"),
    ("gan.periods=[0]", r"gan.periods=\[0\] must list one or more periods >= 1"),
    ("gan.channels=0", r"gan.channels=0 must be a finite number > 0"),
    ("gan.stft_windows=[2]", r"gan.stft_windows=\[2\] must list one or more STFT window lengths of at least 4"),
    ("gan.betas=[2,3]", r"gan.betas=\[2, 3\] must be two numbers in \[0, 1\)"),
    ("gan.discriminator_warmup_steps=-1", r"gan.discriminator_warmup_steps=-1 must be a number >= 0"),
    ("model.kernel_size=0", r"model.kernel_size=0 must be at least 1"),
    ("model.downsample=0", r"model.downsample=0 must be at least 1"),
    ("model.decoder_analysis_blocks=-1", r"model.decoder_analysis_blocks=-1 must be at least 0"),
    ("model.masked_quantizers=-1", r"model.masked_quantizers=-1 must be at least 0"),
    ("model.analysis_n_fft=100", r"model.analysis_n_fft=100 must be at least model.hop_length=160"),
    ("model.analysis_n_fft=100000", r"model.analysis_n_fft=100000 must be at most 16000 samples \(1 s"),
    ("data.tone_probability=2", r"data.tone_probability=2.0 must be in \[0, 1\]"),
    ("data.tone_level_db=[10,-10]", r"data.tone_level_db=\[10, -10\] must be \[low, high\]"),
    ("run.threads=-1", r"run.threads=-1 must be 1 to \d+, the CPU cores this process may use"),
    ("run.threads=100000", r"run.threads=100000 must be 1 to \d+, the CPU cores"),
    ("run.seed=-1", r"run.seed=-1 must be at least 0"),
    ("run.device=banana", r"run.device='banana' is not supported; choose auto, cpu or cuda"),
    ("run=5", r"recipe section 'run' must be a mapping"),
    ("run.checkpoint_minutes=.nan", r"run.checkpoint_minutes=nan must be a finite number > 0"),
    ("run.checkpoint_minutes=.inf", r"run.checkpoint_minutes=inf must be a finite number > 0"),
    ("run.max_minutes=.nan", r"run.max_minutes=nan must be a finite number > 0"),
    ("run.out_dir=", r"run.out_dir='' is empty"),
    ("data.train_dir=", r"data.train_dir='' is empty; give a folder or file"),   # (an unset shell variable)
    ("run.batch_size=100000", r"run.batch_size=100000 and data.segment_seconds=0.4 make 40000 s of audio a step"),
])
def test_recipe_values_are_checked(override, message):
    with pytest.raises(CodecError, match=message):
        if override == "run=5":
            from codec.train.recipe import Recipe
            Recipe.from_dict({"run": 5})
        else:
            load_recipe(REPO / "recipes" / "tiny.yaml", [override])


@pytest.mark.parametrize("recipe,override,message", [
    ("esc_16k", "model.heads=0", r"model.heads=0 must be at least 1"),
    ("esc_16k", "model.heads=3", r"model.dims=\[64, 96, 128\] and model.heads=3: each width must be a multiple of 2 x"),
    ("esc_16k", "model.dims=[64,0,128]", r"model.dims=\[64, 0, 128\]: every item must be at least 1"),
    ("esc_16k", "model.window=0", r"model.window=0 must be at least 1"),
    ("esc_16k", "model.codebooks_per_scale=[0,3,3]", r"model.codebooks_per_scale=\[0, 3, 3\]: every item must be at"),
    ("esc_16k", "model.name=", r"model.name='' is not a model's name: give a plain name \(not empty, no / or"),
    ("esc_16k", "model.name=runs/x", r"model.name='runs/x' is not a model's name"),
    ("entropy_conv_16k", "entropy.name=..", r"entropy.name='..' is not a model's name"),
    ("entropy_conv_16k", "entropy.heads=0", r"entropy.heads=0 must be at least 1"),
    ("entropy_conv_16k", "entropy.heads=5", r"entropy.dim=192 and entropy.heads=5: each width must be a multiple"),
    ("entropy_conv_16k", "entropy.context_frames=0", r"entropy.context_frames=0 must be at least 1"),
    ("entropy_conv_16k", "entropy.codebook_size=1", r"entropy.codebook_size=1 must be from 2 to 65536"),
    ("entropy_conv_16k", "data.segment_frames=0", r"data.segment_frames=0 must be at least 1"),
    ("entropy_conv_16k", "data.codebook_choices=[]", r"data.codebook_choices=\[\] must list codebook counts from 1"),
    ("entropy_conv_16k", "data.codebook_choices=[48]", r"data.codebook_choices=\[48\] must list codebook counts"),
    ("entropy_conv_16k", "data.codec_model=", r"data.codec_model='' is empty"),
    ("entropy_conv_16k", "data.train_dir= ", r"data.train_dir=' ' is empty"),
])
def test_esc_and_entropy_recipe_values_are_checked(recipe, override, message):
    with pytest.raises(CodecError, match=message):
        load_recipe(REPO / "recipes" / f"{recipe}.yaml", [override])


@pytest.mark.parametrize("recipe,overrides,message", [
    ("esc_16k", ["model.global_groups=4"], r"model.global_groups=4: an ESC model has no time-invariant global code"),
    ("tiny", ["model.global_film=true"], r"model.global_film=true conditions the decoder on the time-invariant "
                                         r"global code, which the model has only with model.global_groups above 0"),
    ("tiny", ["model.global_groups=4", "model.global_codebook_size=1"],
     r"model.global_codebook_size=1 must be at least 2"),
    ("tiny", ["model.global_groups=4", "model.global_codebook_size=0"],
     r"model.global_codebook_size=0 must be at least 2"),
    ("tiny", ["model.global_groups=4", "model.global_seconds=0"], r"model.global_seconds=0.0 must be above 0"),
])
def test_global_code_values_that_could_not_apply_are_refused(recipe, overrides, message):
    """Each was taken and silently ignored, or trained a model that no .codes file could hold."""
    with pytest.raises(CodecError, match=message):
        load_recipe(REPO / "recipes" / f"{recipe}.yaml", overrides)


def test_the_models_own_size_rules_are_recipe_errors_before_any_data_is_read(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", ["model.hop_length=100", f"run.out_dir={tmp_path / 'r'}",
                                                          f"data.train_dir={tmp_path / 'no-such-data'}"])
    with pytest.raises(CodecError, match=r"recipe model section: model.synthesis_n_fft=320 must be an even multiple "
                                         r"of model.hop_length=100"):
        train(recipe)
    assert not (tmp_path / "r").exists()
    from codec.train import train_any

    # as codec train reports them: each value where it was set
    bitrates = "recipe value model.bitrates_kbps=[1.5, 3.0, 6.0, 12.0] at model.sample_rate=8000, model.hop_length=160"
    for override, named in (("model.hop_length=100", "and override 'model.hop_length=100': recipe model section"),
                            ("model.sample_rate=8000", f"and override 'model.sample_rate=8000': {bitrates}"),
                            # (a value the rule follows from, which the message did not name: only the files were)
                            ("model.downsample=3", "and override 'model.downsample=3': recipe value "
                                                   "model.bitrates_kbps=[1.5, 3.0, 6.0, 12.0] at "
                                                   "model.sample_rate=16000, model.hop_length=160, model.downsample=3"),
                            ("model.num_codebooks=1", "and override 'model.num_codebooks=1': recipe value "
                                                      "loss.codebook_choices=[3, 6, 12, 24] asks for more codebooks")):
        with pytest.raises(CodecError) as error:
            train_any(load_recipe("tiny", [override, f"run.out_dir={tmp_path / 'r'}"]))
        assert named in str(error.value)


@pytest.mark.parametrize("listed, fix", [("[3,1.5]", "[1.5, 3]"), ("[1.5,1.5,6]", "[1.5, 6]")])
def test_bitrates_listed_twice_or_out_of_order_are_refused(tmp_path, listed, fix):
    # (a model trained with them listed its bitrates as [3, 1.5], or 1.5 twice, in codec info and errors)
    with pytest.raises(CodecError, match=re.escape(f"list each bitrate once, lowest first: {fix}")):
        train(load_recipe("tiny", [f"model.bitrates_kbps={listed}", f"run.out_dir={tmp_path / 'r'}"]))
    assert not (tmp_path / "r").exists()


def test_entropy_training_on_files_of_one_frame_says_so(tiny_model_dir, tmp_path):
    from codec.train.entropy_trainer import train_entropy

    for i in range(2):
        write_audio(tmp_path / f"{i}.wav", tone(0.01, 16000), 16000)   # 160 samples: one code frame
    recipe = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [
        f"data.codec_model={tiny_model_dir}", "entropy.codec=tiny-16k", f"data.train_dir={tmp_path}",
        f"run.out_dir={tmp_path / 'run'}", "data.dev_dir=null"])
    with pytest.raises(CodecError, match=r"no file is longer than one code frame"):
        train_entropy(recipe)


def test_an_entropy_model_that_cannot_code_the_codecs_codes_is_refused(tiny_model_dir, tmp_path):
    from codec.train.entropy_trainer import train_entropy

    recipe = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [
        f"data.codec_model={tiny_model_dir}", "entropy.codec=tiny-16k", "entropy.codebook_size=512",
        f"data.train_dir={tmp_path}", f"run.out_dir={tmp_path / 'run'}", "data.dev_dir=null"])
    with pytest.raises(CodecError, match=r"entropy.num_codebooks=24 and entropy.codebook_size=512 do not fit "
                                         r"data.codec_model=.*: it has 24 codebooks of 1024 codes"):
        train_entropy(recipe)


@pytest.mark.parametrize("bitrates,message", [
    ("[13]", "13 kbps needs 26 codebooks; this model has 1 to 24 \\(each adds 0.5 kbps: 0.5 to 12 kbps\\)"),
    ("[0.1]", "0.1 kbps is not a whole number of codebooks"),
    ("[]", "lists no bitrate"),
])
def test_bitrates_the_model_cannot_serve_are_refused_before_training(bitrates, message, tmp_path):
    with pytest.raises(CodecError, match=rf"model.bitrates_kbps=.*: {message}"):
        train(load_recipe(REPO / "recipes" / "tiny.yaml", [f"model.bitrates_kbps={bitrates}",
                                                              f"run.out_dir={tmp_path / 'r'}"]))
    assert not (tmp_path / "r" / "model").exists()


def test_sections_that_are_not_mappings(tmp_path):
    from codec.train.entropy_trainer import EntropyRecipe

    with pytest.raises(CodecError, match="recipe section 'run' must be a mapping"):
        EntropyRecipe.from_dict({"entropy": {}, "run": 5})
    (tmp_path / "empty_loss.yaml").write_text("inherit: " + str(REPO / "recipes" / "tiny.yaml") + "\nloss:\n")
    assert load_recipe(tmp_path / "empty_loss.yaml", ["loss.mel_weight=2"]).loss.mel_weight == 2.0
    (tmp_path / "number_run.yaml").write_text("run: 5\n")
    with pytest.raises(CodecError, match="'run' is not a mapping"):
        load_recipe(tmp_path / "number_run.yaml", ["run.seed=1"])


def test_paths_in_a_recipe_expand_a_home_folder_and_an_empty_optional_one_is_unset(monkeypatch, tmp_path):
    """``-o run.out_dir=~/run`` (the shell leaves ~ after = alone) made a folder named ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", ["run.out_dir=~/run", "data.train_dir=~/audio",
                                                          "data.noise_dir=", "run.init_from=~/weights"])
    assert (recipe.run.out_dir, recipe.data.train_dir) == (str(tmp_path / "run"), str(tmp_path / "audio"))
    assert recipe.data.noise_dir is None and recipe.run.init_from == str(tmp_path / "weights")
    entropy = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", ["data.dev_dir=", "data.train_dir=~/a"])
    assert entropy.data.dev_dir is None and entropy.data.train_dir == str(tmp_path / "a")


def test_an_unreadable_noise_file_is_left_out_with_a_warning(audio_folder, tmp_path):
    """As an unreadable training file is: one bad file among the noise does not stop the run."""
    noise = tmp_path / "noise"
    noise.mkdir()
    write_audio(noise / "hum.wav", tone(1.0, 16000, 50.0), 16000)
    (noise / "bad.wav").write_bytes(b"junk")
    report = io.StringIO()
    train(tiny(audio_folder, tmp_path / "run", f"data.noise_dir={noise}", "data.noise_probability=0.5",
               "run.max_steps=1"), console=Console(file=report, width=400))
    assert "warning: 1 noise file(s) cannot be read and are left out, first: " in report.getvalue()
    assert "bad.wav" in report.getvalue()


def test_a_missing_data_folder_names_its_recipe_key(audio_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for override, message in (("data.train_dir=nosuch", "recipe value data.train_dir=nosuch (relative to the "
                                                         f"current folder, {tmp_path}): no such file or folder; to "
                                                         f"train on your own audio, give its folder (or a manifest "
                                                         f"of its files) with -o data.train_dir=PATH"),
                              ("data.noise_dir=nosuch", "recipe value data.noise_dir=nosuch (relative"),
                              ("data.train_dir=./nosuch/", "recipe value data.train_dir=./nosuch/ (relative")):
        recipe = load_recipe(REPO / "recipes" / "tiny.yaml", [f"data.train_dir={audio_folder}", override,
                                                              "run.out_dir=run", "run.max_steps=1",
                                                              *(["data.noise_probability=0.5"] if "noise" in override
                                                                else [])])
        with pytest.raises(CodecError) as error:
            train(recipe)
        assert message in str(error.value)


def test_recipe_files_that_inherit_wrongly(tmp_path):
    (tmp_path / "self.yaml").write_text("inherit: self.yaml\n")
    with pytest.raises(CodecError, match="inherits itself"):
        load_recipe(tmp_path / "self.yaml")
    (tmp_path / "number.yaml").write_text("inherit: 5\n")
    with pytest.raises(CodecError, match="must name a recipe file"):
        load_recipe(tmp_path / "number.yaml")
    (tmp_path / "lost.yaml").write_text("inherit: no_such_recipe.yaml\n")
    with pytest.raises(CodecError, match=r"no_such_recipe.yaml: recipe not found \(inherited by .*lost.yaml"):
        load_recipe(tmp_path / "lost.yaml")


def test_a_recipe_that_is_a_pipe_is_named_as_one(tmp_path):
    # (codec train <(...) said "recipe not found" of a file that is there)
    os.mkfifo(tmp_path / "piped.yaml")
    with pytest.raises(CodecError, match=r"piped.yaml: is not a regular file \(a pipe or device\); write the recipe "
                                         r"to a file"):
        load_recipe(tmp_path / "piped.yaml")


def test_silent_training_audio_is_refused(tmp_path):
    folder = tmp_path / "silence"
    folder.mkdir()
    write_audio(folder / "zeros.wav", np.zeros(16000), 16000)
    with pytest.raises(CodecError, match="all of its audio is silent"):
        train(tiny(folder, tmp_path / "run", "run.max_steps=2"))
    empty = tmp_path / "empty"
    empty.mkdir()
    write_audio(empty / "none.wav", np.zeros(0), 16000)
    with pytest.raises(CodecError, match=r"empty: holds no audio \(its files have no samples\)"):
        train(tiny(empty, tmp_path / "run", "run.max_steps=2"))


def test_a_diverged_run_stops_and_keeps_its_last_checkpoint(audio_folder, tmp_path, monkeypatch):
    out_dir = tmp_path / "run"
    train(tiny(audio_folder, out_dir, "run.max_steps=3"))
    before = (out_dir / CHECKPOINT_FILE).read_bytes()
    monkeypatch.setattr("codec.train.trainer.MAX_NON_FINITE_IN_A_ROW", 5)
    with pytest.raises(CodecError, match=r"training diverged at step \d+: 5 steps in a row"):
        train(tiny(audio_folder, out_dir, "run.max_steps=10", "optim.lr=1e30", "optim.warmup_steps=0"),
              resume=True)
    assert (out_dir / CHECKPOINT_FILE).read_bytes() == before
    with pytest.raises(CodecError, match=r"5 steps in a row .*; no checkpoint was saved: lower optim.lr or raise "
                                         r"optim.warmup_steps, then start the run again"):
        train(tiny(audio_folder, tmp_path / "new", "run.max_steps=10", "optim.lr=1e30", "optim.warmup_steps=0"))


def test_resuming_needs_the_checkpoints_model_and_a_readable_file(audio_folder, tmp_path):
    out_dir = tmp_path / "run"
    train(tiny(audio_folder, out_dir, "run.max_steps=2"))
    with pytest.raises(CodecError, match=r"does not fit this recipe \(changed: model.latent_dim=.* -> 32\)"):
        train(tiny(audio_folder, out_dir, "run.max_steps=4", "model.latent_dim=32"), resume=True)
    with pytest.raises(CodecError, match=r"does not fit this recipe \(changed: optim.freeze=\[\] -> \['encoder'\]"):
        train(tiny(audio_folder, out_dir, "run.max_steps=4", "optim.freeze=[encoder]",
                   f"run.init_from={out_dir / 'model'}"), resume=True)
    (out_dir / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(CodecError, match="checkpoint.pt: not a readable checkpoint"):
        train(tiny(audio_folder, out_dir, "run.max_steps=4"), resume=True)


def test_ctrl_c_stops_after_the_step_and_saves(audio_folder, tmp_path, monkeypatch):
    import signal

    out_dir = tmp_path / "run"
    calls = []
    real_batch = RandomCropDataset.batch

    def batch_then_ctrl_c(self, size):   # Ctrl-C arrives during the third step
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real_batch(self, size)

    monkeypatch.setattr(RandomCropDataset, "batch", batch_then_ctrl_c)
    caught = []

    def placeholder(signum, frame):   # stands in for the process's own handler (and keeps pytest alive)
        caught.append(signum)

    before = signal.signal(signal.SIGINT, placeholder), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(TrainingStopped) as stopped:   # saved, but not finished: the CLI exits 130
            train(tiny(audio_folder, out_dir, "run.max_steps=50"))
        assert stopped.value.signum == signal.SIGINT
        assert torch.load(out_dir / CHECKPOINT_FILE, weights_only=True)["step"] == 3
        assert signal.getsignal(signal.SIGINT) is placeholder and not caught      # the run's handler took it
        assert signal.getsignal(signal.SIGTERM) is before[1]                      # and both are given back
    finally:
        signal.signal(signal.SIGINT, before[0])


def test_a_second_ctrl_c_stops_at_once_and_says_what_was_kept(audio_folder, tmp_path, monkeypatch):
    import signal

    calls = []
    real_batch = RandomCropDataset.batch

    def batch_then_two_ctrl_c(self, size):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return real_batch(self, size)

    monkeypatch.setattr(RandomCropDataset, "batch", batch_then_two_ctrl_c)
    before = signal.signal(signal.SIGINT, lambda signum, frame: None)
    run = tmp_path / "run"
    try:   # (checkpoints are saved every few minutes: none yet at the third step)
        with pytest.raises(KeyboardInterrupt, match=r"^interrupted again: stopped at once, without saving; no "
                                                    r"checkpoint had been saved yet$"):
            train(tiny(audio_folder, run, "run.max_steps=50"))
        assert not (run / CHECKPOINT_FILE).exists()
        train(tiny(audio_folder, tmp_path / "first", "run.max_steps=1"))   # one that was saved is named
        calls.clear()
        with pytest.raises(KeyboardInterrupt, match=f"^interrupted again: stopped at once, without saving; "
                                                    f"{re.escape(str(tmp_path / 'first' / CHECKPOINT_FILE))} from "
                                                    f"the last save is kept \\(--resume goes on from it\\)$"):
            train(tiny(audio_folder, tmp_path / "first", "run.max_steps=50"), resume=True)
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_second_ctrl_c_during_a_save_says_the_model_can_be_older(audio_folder, tmp_path, monkeypatch):
    """A save writes the checkpoint, then the model: stopped in between, the message said "without
    saving" and "the last save's checkpoint is kept", though that checkpoint was newer than model/."""
    import signal

    from codec.train import trainer

    run = tmp_path / "run"
    train(tiny(audio_folder, run, "run.max_steps=1"), console=Console(file=io.StringIO()))
    real_batch, real_save_checkpoint = RandomCropDataset.batch, trainer._save_checkpoint

    def batch_then_ctrl_c(self, size):
        signal.raise_signal(signal.SIGINT)   # the run stops after this step, and saves
        return real_batch(self, size)

    def save_checkpoint_then_ctrl_c(*args, **kwargs):
        real_save_checkpoint(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)   # the second: stops at once, before the model is written
    monkeypatch.setattr(RandomCropDataset, "batch", batch_then_ctrl_c)
    monkeypatch.setattr(trainer, "_save_checkpoint", save_checkpoint_then_ctrl_c)
    before = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        with pytest.raises(KeyboardInterrupt, match=f"^interrupted again: stopped at once, during a save; "
                                                    f"{re.escape(str(run / CHECKPOINT_FILE))} is kept \\(--resume "
                                                    f"goes on from it\\), and {re.escape(str(run / 'model'))} can "
                                                    f"be from the save before it$"):
            train(tiny(audio_folder, run, "run.max_steps=50"), resume=True, console=Console(file=io.StringIO()))
    finally:
        signal.signal(signal.SIGINT, before)
    assert torch.load(run / CHECKPOINT_FILE, weights_only=True)["step"] == 2   # resumable, from the newer one


def test_a_ctrl_c_that_python_dropped_during_setup_still_stops_the_run(audio_folder, tmp_path):
    import signal

    from codec import signals

    try:   # the CLI's handler raises, in a weakref callback during an import, where Python drops it
        signals._raise_interrupt(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass
    with pytest.raises(TrainingStopped) as stopped:   # the run stops before its first step, and saves
        train(tiny(audio_folder, tmp_path / "run", "run.max_steps=50"))
    assert stopped.value.signum == signal.SIGINT and signals.take_raised() == []
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["step"] == 0


def test_sighup_stops_after_the_step_and_saves(audio_folder, tmp_path, monkeypatch):
    import signal

    calls, real_batch = [], RandomCropDataset.batch

    def batch_then_hangup(self, size):   # the terminal closes during the second step
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGHUP)
        return real_batch(self, size)

    monkeypatch.setattr(RandomCropDataset, "batch", batch_then_hangup)
    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(TrainingStopped) as stopped:   # the CLI exits 129
        train(tiny(audio_folder, tmp_path / "run", "run.max_steps=50"))
    assert stopped.value.signum == signal.SIGHUP and signal.getsignal(signal.SIGHUP) is before
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["step"] == 2


def test_a_console_without_reader_stops_the_run_after_saving(audio_folder, tmp_path):
    import signal

    from rich.console import Console

    from tests.conftest import ReaderGone

    console = Console(file=ReaderGone())
    with pytest.raises(TrainingStopped) as stopped:   # the CLI exits 141, as for SIGPIPE
        train(tiny(audio_folder, tmp_path / "run", "run.max_steps=50", "run.log_every=1"), console=console)
    assert stopped.value.signum == signal.SIGPIPE
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["step"] < 50
    assert (tmp_path / "run" / "model").is_dir()
    # the last steps' record, written after the loop (3 is no multiple of 5), found the reader gone first:
    # the run was lost before its save
    with pytest.raises(TrainingStopped):
        train(tiny(audio_folder, tmp_path / "short", "run.max_steps=3", "run.log_every=5"),
              console=Console(file=ReaderGone()))
    assert torch.load(tmp_path / "short" / CHECKPOINT_FILE, weights_only=True)["step"] == 3
    assert (tmp_path / "short" / "model").is_dir()


def test_two_runs_never_share_a_run_folder(audio_folder, tmp_path):
    from codec.train.entropy_trainer import train_entropy
    from codec.train.run_lock import run_folder_lock

    out = tmp_path / "run"
    with run_folder_lock(out):   # as a run in another process holds it
        with pytest.raises(CodecError, match=r"run.out_dir=.*run is in use by another training run"):
            train(tiny(audio_folder, out, "run.max_steps=1"))
        entropy = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [f"run.out_dir={out}"])
        with pytest.raises(CodecError, match=r"is in use by another training run"):
            train_entropy(entropy)
    assert not out.exists()   # made for the lock, and left empty: removed again
    train(tiny(audio_folder, out, "run.max_steps=1"))
    assert (out / CHECKPOINT_FILE).is_file()


def test_resuming_with_a_recipe_of_another_kind_is_refused_before_any_work(audio_folder, tmp_path):
    from codec.train.entropy_trainer import train_entropy

    out = tmp_path / "run"
    train(tiny(audio_folder, out, "run.max_steps=1"))
    esc = load_recipe(REPO / "recipes" / "esc_16k.yaml", [f"data.train_dir={audio_folder}", f"run.out_dir={out}"])
    with pytest.raises(CodecError, match=r"the run trains a codec of architecture 'conv', and this recipe a codec "
                                         r"of architecture 'esc'; resume with the run's recipe"):
        train(esc, resume=True)
    entropy = load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [f"data.train_dir={audio_folder}",
                                                                      f"run.out_dir={out}", "data.dev_dir=null"])
    with pytest.raises(CodecError, match=r"the run trains a codec of architecture 'conv', and this recipe an "
                                         r"entropy model"):
        train_entropy(entropy, resume=True)
    assert not (out / "codes.npz").exists()


def test_init_from_shipped_weights(audio_folder, tmp_path):
    first = tmp_path / "first"
    train(tiny(audio_folder, first, "run.max_steps=5"))
    second = tmp_path / "second"
    train(tiny(audio_folder, second, "run.max_steps=0", f"run.init_from={first / 'model'}"))
    a, b = load_model(first / "model").state_dict(), load_model(second / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CodecError, match=r"do not fit the recipe's model section \(\S+ is \[\d+.*"
                                         r"run.init_fresh: \[decoder, encoder, quantizer\]"):
        train(tiny(audio_folder, tmp_path / "third", "run.max_steps=0", "model.latent_dim=8",
                   f"run.init_from={first / 'model'}"))
    with pytest.raises(CodecError, match=r"none of its parts fits the recipe's model section \(analysis_dim=16 "
                                         r"there, 8 here; code_rate_dim=32 there, 8 here"):
        train(tiny(audio_folder, tmp_path / "fourth", "run.max_steps=0", "model.analysis_dim=8",
                   "model.code_rate_dim=8", "model.latent_dim=8", f"run.init_from={first / 'model'}"))
    with pytest.raises(CodecError, match=r"is a model of architecture 'esc', and the recipe's model section is "
                                         r"'conv'; start from a model of the same architecture"):
        train(tiny(audio_folder, tmp_path / "fifth", "run.max_steps=0", "run.init_from=esc-16k-small"))
    assert not any((tmp_path / name).exists() for name in ("third", "fourth", "fifth"))


def test_init_from_a_model_with_an_input_level_warns_a_recipe_without_one(audio_folder, tmp_path):
    """The input level and high-pass act in codec encode only: a recipe that leaves them out writes a
    model that codes the same audio otherwise, which the run says, naming the overrides that keep them."""
    leveled = tmp_path / "leveled"
    train(tiny(audio_folder, leveled, "run.max_steps=0", "model.input_level_dbfs=-18", "model.input_highpass_hz=80"))
    log = io.StringIO()
    train(tiny(audio_folder, tmp_path / "plain", "run.max_steps=0", f"run.init_from={leveled / 'model'}"),
          console=Console(file=log, width=1000))
    assert "lacks: the model this run writes will code the same audio without them, into other codes; add " \
           "-o model.input_level_dbfs=-18.0 -o model.input_highpass_hz=80.0 to keep them" in log.getvalue()
    log = io.StringIO()
    train(tiny(audio_folder, tmp_path / "kept", "run.max_steps=0", f"run.init_from={leveled / 'model'}",
               "model.input_level_dbfs=-18", "model.input_highpass_hz=80"), console=Console(file=log, width=1000))
    assert "lacks" not in log.getvalue() and "starting from its weights\n" in log.getvalue()


def test_init_from_a_plain_rvq_into_masked_channel_rvq(audio_folder, tmp_path):
    first = tmp_path / "first"
    train(tiny(audio_folder, first, "run.max_steps=3"))
    second = tmp_path / "second"
    train(tiny(audio_folder, second, "run.max_steps=0", "model.masked_quantizers=2",
               f"run.init_from={first / 'model'}"))
    layers = load_model(second / "model").quantizer.layers
    assert [bool(layer.initialized) for layer in layers[:3]] == [False, False, True]  # re-sliced ones start afresh
    assert load_model(second / "model").config.masked_quantizers == 2


def test_init_from_a_model_with_fewer_codebooks(audio_folder, tmp_path):
    first = tmp_path / "first"
    train(tiny(audio_folder, first, "run.max_steps=3"))
    source = load_model(first / "model")
    second = tmp_path / "second"
    count = source.num_codebooks + 4
    train(tiny(audio_folder, second, "run.max_steps=0", f"model.num_codebooks={count}",
               f"run.init_from={first / 'model'}"))
    grown = load_model(second / "model")
    a, b = source.state_dict(), grown.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)                    # everything it had is kept
    assert [bool(layer.initialized) for layer in grown.quantizer.layers[-4:]] == [False] * 4  # new ones: from data


def test_init_from_a_ticodec_into_a_plain_model_leaves_its_global_code_out(audio_folder, tmp_path):
    first = tmp_path / "first"
    train(tiny(audio_folder, first, "run.max_steps=0", "model.global_groups=2", "model.global_dim=8",
               "model.global_film=true"), console=Console(file=io.StringIO()))
    report = io.StringIO()
    second = tmp_path / "second"
    train(tiny(audio_folder, second, "run.max_steps=0", f"run.init_from={first / 'model'}"),
          console=Console(file=report, width=400))
    assert "its global_code, global_film left out (this model has none)" in report.getvalue()
    a, b = load_model(first / "model").state_dict(), load_model(second / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)   # every part it has is the TiCodec's


def test_freeze_fine_tunes_only_the_decoder_and_keeps_the_codes(audio_folder, tmp_path):
    first = tmp_path / "first"
    train(tiny(audio_folder, first, "run.max_steps=5"))
    second = tmp_path / "second"
    train(tiny(audio_folder, second, "run.max_steps=5", f"run.init_from={first / 'model'}",
               "optim.freeze=[stft,encoder,quantizer]"))
    a, b = load_model(first / "model").state_dict(), load_model(second / "model").state_dict()
    kept = [k for k in a if k.split(".")[0] in ("encoder", "quantizer")]
    assert kept and all(torch.equal(a[k], b[k]) for k in kept)   # buffers too: no re-seeding
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    with pytest.raises(CodecError, match="its parts are"):
        train(tiny(audio_folder, tmp_path / "third", f"run.init_from={first / 'model'}",
                   "optim.freeze=[encoder,vocoder]"))
    with pytest.raises(CodecError, match=r"optim.freeze=\['encoder'\] keeps parts at run.init_from's weights, but "
                                         r"run.init_from is not set \(they would stay at their random start\)"):
        train(tiny(audio_folder, tmp_path / "fourth", "optim.freeze=[encoder]"))


def test_a_decoder_fine_tune_reads_its_sources_codes_and_keeps_its_entropy_model(audio_folder, tmp_path):
    from codec.coding import decode_audio, encode_audio
    from codec.entropy import EntropyModel, EntropyModelConfig, save_entropy_model

    first = tmp_path / "first"
    train(tiny(audio_folder, first, "run.max_steps=3"))
    save_entropy_model(EntropyModel(EntropyModelConfig(name="e", codec="tiny-16k", dim=16, layers=1, heads=2,
                                                       context_frames=8, depth_hidden=16)), first / "model")
    source = load_model(first / "model")
    codes = encode_audio(source, tone(0.5, 16000), 16000, source.config.bitrates_kbps[-1])
    decoder = tmp_path / "decoder"
    train(tiny(audio_folder, decoder, "run.max_steps=2", f"run.init_from={first / 'model'}",
               "optim.freeze=[stft,encoder,quantizer]"))
    fine_tuned = load_model(decoder / "model")
    assert fine_tuned.readable_weights == [source.weights_sha256[:8]] and fine_tuned.entropy_model is not None
    assert decode_audio(fine_tuned, codes)[0].shape == (8000, 1)
    # codes of the run's own model so far, and an entropy model of the user's own beside it
    own_codes = encode_audio(fine_tuned, tone(0.5, 16000), 16000, source.config.bitrates_kbps[-1])
    save_entropy_model(EntropyModel(EntropyModelConfig(name="mine", codec="tiny-16k", dim=16, layers=1, heads=2,
                                                       context_frames=8, depth_hidden=16)), decoder / "model")
    train(tiny(audio_folder, decoder, "run.max_steps=3", f"run.init_from={first / 'model'}",
               "optim.freeze=[stft,encoder,quantizer]"), resume=True)   # resumed: still so, and more
    resumed = load_model(decoder / "model")
    assert resumed.readable_weights == [source.weights_sha256[:8], fine_tuned.weights_sha256[:8]]
    assert decode_audio(resumed, own_codes)[0].shape == (8000, 1) and resumed.entropy_model.config.name == "mine"

    whole = tmp_path / "whole"   # the encoder learns too: other codes, neither is carried
    train(tiny(audio_folder, whole, "run.max_steps=2", f"run.init_from={first / 'model'}"))
    assert not (whole / "model" / "compatible_weights.json").exists()
    assert load_model(whole / "model").entropy_model is None
    with pytest.raises(CodecError, match="made by model 'tiny-16k'"):
        decode_audio(load_model(whole / "model"), codes)


def test_weight_average_is_what_the_run_exports_and_resumes(audio_folder, tmp_path):
    out_dir = tmp_path / "run"
    train(tiny(audio_folder, out_dir, "run.max_steps=6", "optim.ema_decay=0.9"))
    state = torch.load(out_dir / CHECKPOINT_FILE, weights_only=True)
    live, exported = state["model"], load_model(out_dir / "model").state_dict()
    averaged = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    assert int(state["ema"]["n_averaged"]) == 6
    learnt = [k for k, v in live.items() if v.is_floating_point() and not torch.equal(v, averaged[k])]
    assert learnt                                    # the average lags the live weights ...
    assert all(torch.allclose(exported[k], averaged[k]) for k in learnt)   # ... and is what is exported
    train(tiny(audio_folder, out_dir, "run.max_steps=8", "optim.ema_decay=0.9"), resume=True)
    assert int(torch.load(out_dir / CHECKPOINT_FILE, weights_only=True)["ema"]["n_averaged"]) == 8
    saved = (out_dir / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(CodecError, match="ema_decay=0.9"):   # resuming without it would drop the average
        train(tiny(audio_folder, out_dir, "run.max_steps=10"), resume=True)
    assert (out_dir / CHECKPOINT_FILE).read_bytes() == saved
    report = io.StringIO()   # a value the run did not start with is named
    train(tiny(audio_folder, out_dir, "run.max_steps=9", "optim.ema_decay=0.9", "loss.stft_weight=2"), resume=True,
          console=Console(file=report, width=400))
    assert "loss.stft_weight=1.0 -> 2.0" in report.getvalue() and "max_steps=" not in report.getvalue()
    moved = tmp_path / "moved"   # a moved run, its data named by a relative path: nothing changed
    out_dir.rename(moved)
    report = io.StringIO()
    train(load_recipe(REPO / "recipes" / "tiny.yaml", [
        f"data.train_dir={os.path.relpath(audio_folder)}", f"run.out_dir={moved}", "run.max_steps=10",
        "optim.ema_decay=0.9", "loss.stft_weight=2"]), resume=True, console=Console(file=report, width=400))
    assert "note" not in report.getvalue()
    with pytest.raises(CodecError, match="ema_decay"):
        tiny(audio_folder, tmp_path / "bad", "optim.ema_decay=1")


def test_a_resumed_gan_run_continues_as_if_it_had_not_stopped(audio_folder, tmp_path):
    """The balancer's running gradient norms are in the checkpoint (they restarted on resume)."""
    gan = ["run.log_every=1", "run.tensorboard=false", "gan.enabled=true", "gan.channels=4", "gan.periods=[2]",
           "gan.stft_windows=[256]"]
    train(tiny(audio_folder, tmp_path / "straight", "run.max_steps=4", *gan))
    train(tiny(audio_folder, tmp_path / "stopped", "run.max_steps=2", *gan))
    train(tiny(audio_folder, tmp_path / "stopped", "run.max_steps=4", *gan), resume=True)
    timing = ("steps_per_s", "total_min", "elapsed_min")
    logs = [[{k: v for k, v in json.loads(line).items() if k not in timing}
             for line in (tmp_path / name / "train.log").read_text().splitlines()] for name in ("straight", "stopped")]
    assert len(logs[0]) == 4 and logs[0] == logs[1]


def test_gan_stage_trains_and_keeps_discriminator_gradients_apart(audio_folder, tmp_path):
    from codec.train.gan import GanStage
    from codec.train.recipe import GanConfig, LossConfig

    gan = GanStage(GanConfig(enabled=True, periods=[2, 3], stft_windows=[256], channels=4), LossConfig())
    real = 0.1 * torch.randn(2, 1, 6400)
    fake = (0.1 * torch.randn(2, 1, 6400)).requires_grad_(True)
    before = [p.detach().clone() for p in gan.discriminators.parameters()]
    gan.discriminator_step(real, fake)
    after = [p.detach().clone() for p in gan.discriminators.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # D changes every step
    gan.optimizer.zero_grad(set_to_none=True)
    losses = gan.generator_losses(real, fake)
    gradient = gan.audio_gradient({**losses, "mel": (fake - real).abs().mean()}, fake)
    fake.backward(gradient)
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    assert all(p.grad is None for p in gan.discriminators.parameters())  # the G step leaves D alone

    out = tmp_path / "gan"
    train(tiny(audio_folder, out, "run.max_steps=4", "run.log_every=2", "gan.enabled=true", "gan.channels=4",
               "gan.periods=[2, 3]", "gan.stft_windows=[256]"))
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert "gan" in state and state["step"] == 4
    assert (out / "tensorboard").is_dir()
    with pytest.raises(CodecError, match="trains with discriminators .* resume with -o gan.enabled=true"):
        train(tiny(audio_folder, out, "run.max_steps=6", "gan.channels=4", "gan.periods=[2, 3]",
                   "gan.stft_windows=[256]"), resume=True)
    assert torch.load(out / CHECKPOINT_FILE, weights_only=True)["step"] == 4

    # the shipped GAN recipe's way: only the decoder learns, so the codes stay valid
    frozen = tmp_path / "gan-decoder"
    train(tiny(audio_folder, frozen, "run.max_steps=4", "run.log_every=2", "gan.enabled=true", "gan.channels=4",
               "gan.periods=[2]", "gan.stft_windows=[256]", "gan.discriminator_warmup_steps=2",
               f"run.init_from={out / 'model'}", "optim.freeze=[stft,encoder,quantizer]"))
    log = [json.loads(line) for line in (frozen / "train.log").read_text().splitlines()]
    assert "adversarial" not in log[0] and "discriminator" in log[0]    # the warm-up trains only D
    assert "adversarial" in log[1]
    a, b = load_model(out / "model").state_dict(), load_model(frozen / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.split(".")[0] in ("encoder", "quantizer"))
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))


def test_silent_clip_and_high_learning_rate_stay_finite(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_audio(folder / "silence.wav", np.zeros(16000), 16000)
    square = np.sign(np.sin(2 * np.pi * 150 * np.arange(16000) / 16000))
    write_audio(folder / "square.wav", np.clip(1.5 * square, -1, 1), 16000)
    out = tmp_path / "run"
    train(tiny(folder, out, "run.max_steps=15", "run.log_every=5", "optim.lr=8e-3", "optim.warmup_steps=1"))
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.long
def test_codebooks_stay_healthy_on_tones(tmp_path):
    folder = tmp_path / "tones"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        t = np.arange(16000) / 16000
        write_audio(folder / f"{i}.wav", 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t), 16000)
    out = tmp_path / "run"
    model = train(tiny(folder, out, "run.max_steps=200", "run.log_every=50", "optim.lr=3e-3"))
    assert min(model.quantizer.perplexities()[:3]) > 10
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads)


def test_bf16_autocast_option_trains(audio_folder, tmp_path):
    out = tmp_path / "bf16"
    model = train(tiny(audio_folder, out, "run.max_steps=3", "run.precision=bf16", "run.tensorboard=false"))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(CodecError, match="run.precision"):
        train(tiny(audio_folder, tmp_path / "bad", "run.precision=fp8"))


def test_losses_on_exact_zeros_have_finite_gradients():
    from codec.train.losses import CompressedComplexSTFTLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss

    silent = torch.zeros(2, 1, 6400, requires_grad=True)
    target = torch.zeros(2, 1, 6400)
    loss = MultiResolutionMelLoss(16000, [64, 512], [8, 64])(silent, target) + \
        MultiResolutionSTFTLoss([256, 1024])(silent, target) + CompressedComplexSTFTLoss([512])(silent, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(silent.grad).all()


def test_complex_loss_sees_the_phase_that_magnitude_losses_miss():
    from codec.train.losses import CompressedComplexSTFTLoss, MultiResolutionSTFTLoss

    speechlike = 0.1 * torch.randn(2, 1, 6400)
    inverted = -speechlike                     # the same magnitudes, every phase turned by pi
    assert MultiResolutionSTFTLoss([512])(inverted, speechlike) < 1e-4
    phase_loss = CompressedComplexSTFTLoss([512], power=0.3, complex_share=0.3)
    assert phase_loss(speechlike, speechlike) < 1e-8
    assert phase_loss(inverted, speechlike) > 0.1
    assert phase_loss(0.5 * speechlike, speechlike) > 1e-3    # and the level, through the magnitudes


def test_complex_loss_only_on_items_with_enough_codebooks(audio_folder, tmp_path):
    from codec.train.losses import CompressedComplexSTFTLoss
    from codec.train.trainer import _loss_on_items

    loss = CompressedComplexSTFTLoss([256])
    y = 0.1 * torch.randn(4, 1, 3200)
    y_hat = y.clone()
    y_hat[:2] = -y[:2]                         # only the first two items are wrong
    keep = torch.tensor([False, False, True, True])
    assert _loss_on_items(loss, y_hat, y, keep) < 1e-8
    assert _loss_on_items(loss, y_hat, y, torch.zeros(4, dtype=torch.bool)) == 0
    both = _loss_on_items(loss, y_hat, y, torch.ones(4, dtype=torch.bool))
    assert torch.isclose(both, loss(y_hat, y))      # a whole-batch mean when every item is kept

    out = tmp_path / "phase"
    train(tiny(audio_folder, out, "run.max_steps=4", "run.log_every=2", "loss.complex_weight=10",
               "loss.complex_min_codebooks=2"))
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert all(np.isfinite(entry["complex"]) and entry["complex"] > 0 for entry in log)

    # in the GAN stage the balancer differentiates every loss, a skipped one too
    none_kept = tmp_path / "phase-gan"
    train(tiny(audio_folder, none_kept, "run.max_steps=2", "run.log_every=1", "loss.complex_weight=10",
               "loss.complex_min_codebooks=1000", "gan.enabled=true", "gan.channels=4", "gan.periods=[2]",
               "gan.stft_windows=[256]"))
    log = [json.loads(line) for line in (none_kept / "train.log").read_text().splitlines()]
    assert [entry["complex"] for entry in log] == [0.0, 0.0] and "adversarial" in log[-1]


def test_phase_derivative_loss_ignores_a_constant_phase_turn_but_not_a_wrong_frequency():
    from codec.train.losses import PhaseDerivativeLoss

    t = torch.arange(6400) / 16000
    voiced = (0.1 * torch.sin(2 * torch.pi * 200 * t) + 0.05 * torch.sin(2 * torch.pi * 400 * t)).view(1, 1, -1)
    voiced = voiced + 0.001 * torch.randn(2, 1, 6400)
    derivatives = PhaseDerivativeLoss([320, 640], ["group_delay", "frequency"])
    absolute = PhaseDerivativeLoss([640], ["phase"])
    assert derivatives(voiced, voiced) < 0.01 and absolute(voiced, voiced) < 0.01
    inverted = -voiced                   # every phase turned by pi: its derivatives are the same
    assert derivatives(inverted, voiced) < 0.01
    assert absolute(inverted, voiced) > 1.9
    detuned = (0.1 * torch.sin(2 * torch.pi * 212 * t) + 0.05 * torch.sin(2 * torch.pi * 424 * t)).view(1, 1, -1)
    detuned = detuned + 0.001 * torch.randn(2, 1, 6400)    # the same bins, a different frequency within them
    assert derivatives(detuned, voiced) > 0.3

    for level in (1e-3, 1.0, 10.0):  # no pull towards a louder or quieter output, at any level
        assert abs(derivatives(2 * level * voiced, level * voiced) - derivatives(level * voiced, level * voiced)) < 1e-4
    silent = torch.zeros(2, 1, 6400, requires_grad=True)
    loss = derivatives(silent, voiced) + absolute(silent, torch.zeros(2, 1, 6400))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(silent.grad).all()
    for terms in (["delay"], [], ["phase", "phase"]):
        with pytest.raises(ValueError, match="group_delay"):
            PhaseDerivativeLoss([640], terms)


def test_phase_derivative_loss_trains_and_checks_its_terms(audio_folder, tmp_path):
    out = tmp_path / "phase-derivative"
    train(tiny(audio_folder, out, "run.max_steps=2", "run.log_every=1", "loss.phase_weight=10"))
    log = [json.loads(line) for line in (out / "train.log").read_text().splitlines()]
    assert all(np.isfinite(entry["phase"]) and 0 < entry["phase"] < 4 for entry in log)
    for bad, key in [("loss.phase_terms=[phase, delay]", "loss.phase_terms"),
                     ("loss.phase_terms=[frequency, frequency]", "loss.phase_terms"),
                     ("loss.phase_windows=[]", "loss.phase_windows"), ("loss.phase_windows=[2]", "loss.phase_windows"),
                     ("loss.phase_windows=[640.5]", "loss.phase_windows"),
                     ("loss.complex_windows=[]", "loss.complex_windows"),
                     ("loss.phase_weight=-1", "loss.phase_weight"), ("loss.phase_weight=.nan", "loss.phase_weight"),
                     ("loss.phase_power=-2", "loss.phase_power"), ("loss.mel_bins=[8]", "loss.mel_bins")]:
        with pytest.raises(CodecError, match=key):
            tiny(audio_folder, out, bad)
    # a window longer than twice the crop: refused before training, only where its loss is on
    long_window = ["loss.phase_windows=[32768]", "run.max_steps=1"]
    with pytest.raises(CodecError, match=r"loss.phase_windows=\[32768\]: a 32768-sample window needs crops"):
        train(tiny(audio_folder, tmp_path / "long", "loss.phase_weight=1", *long_window))
    train(tiny(audio_folder, tmp_path / "off", "loss.phase_weight=0", *long_window))
    with pytest.raises(CodecError, match=r"gan.stft_windows=\[65536\]: a 65536-sample window needs crops"):
        train(tiny(audio_folder, tmp_path / "gan", "gan.enabled=true", "gan.stft_windows=[65536]", "run.max_steps=1"))


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.run.out_dir.startswith("runs/")
    # a shipped model by its name, which an installed package finds too (models/NAME: only in a checkout's root)
    assert not str(recipe.run.init_from or "").startswith("models/")


def test_list_values_read_exponents_as_numbers():
    """YAML 1.1 reads 1e-1 as a string; in a list of numbers it is still the number."""
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", ["data.speed_range=[9e-1,1.1]", "data.level_db=[-3e1,-20]"])
    assert recipe.data.speed_range == [0.9, 1.1] and recipe.data.level_db == [-30.0, -20.0]


def test_a_key_or_section_given_twice_in_a_recipe_is_refused(tmp_path):
    """YAML keeps the last of two equal keys silently: a second ``run:`` section dropped the first's keys."""
    base = f"inherit: {REPO / 'recipes' / 'tiny.yaml'}\n"
    (tmp_path / "sections.yaml").write_text(base + "run:\n  max_steps: 3\ndata:\n  segment_seconds: 0.4\n"
                                                   "run:\n  seed: 1\n")
    with pytest.raises(CodecError, match=r"sections.yaml:6: section 'run' is given twice \(also on line 2\); YAML "
                                         r"would keep only the last"):
        load_recipe(tmp_path / "sections.yaml")
    (tmp_path / "keys.yaml").write_text(base + "run:\n  max_steps: 3\n  seed: 2\n  max_steps: 4\n")
    with pytest.raises(CodecError, match=r"keys.yaml:5: key run.max_steps is given twice \(also on line 3\)"):
        load_recipe(tmp_path / "keys.yaml")
    (tmp_path / "inherited.yaml").write_text(f"inherit: {tmp_path / 'keys.yaml'}\n")   # found in an inherited file too
    with pytest.raises(CodecError, match=r"keys.yaml:5: key run.max_steps is given twice"):
        load_recipe(tmp_path / "inherited.yaml")
    # what YAML means to be overridden is not a duplicate: keys merged in with <<, and one file over another
    (tmp_path / "merged.yaml").write_text(base + "optim: &o\n  lr: 0.001\nrun:\n  <<: {seed: 1, max_steps: 3}\n"
                                                 "  seed: 2\n")
    recipe = load_recipe(tmp_path / "merged.yaml", ["run.seed=5"])
    assert (recipe.run.seed, recipe.run.max_steps, recipe.optim.lr) == (5, 3, 0.001)
    # an anchor that holds itself is walked once (it recursed without end), and refused as a value
    (tmp_path / "recursive.yaml").write_text(base + "run:\n  seed: &a [*a]\n")
    with pytest.raises(CodecError, match=r"recursive.yaml: recipe value run.seed=\[\[...\]\] must be int"):
        load_recipe(tmp_path / "recursive.yaml")


@pytest.mark.parametrize("architecture", ["foo", "[esc]"])
def test_an_unknown_architecture_is_named_with_or_without_overrides(tmp_path, architecture):
    """With an -o override, the architecture was read before its check: a list was an internal error."""
    (tmp_path / "arch.yaml").write_text(f"inherit: {REPO / 'recipes' / 'tiny.yaml'}\n"
                                        f"model:\n  architecture: {architecture}\n")
    for overrides in ([], ["run.seed=1"]):
        with pytest.raises(CodecError, match=r"arch.yaml: recipe value model.architecture=.* is not a codec "
                                             r"architecture; choose conv or esc"):
            load_recipe(tmp_path / "arch.yaml", overrides)


def test_switching_a_recipes_architecture_or_leaving_it_out_is_named_with_the_fix():
    # (before: "unknown keys" blamed the recipe files, with near spellings of the wrong architecture's keys)
    with pytest.raises(CodecError) as error:
        load_recipe(REPO / "recipes" / "tiny.yaml", ["model.architecture=esc"])
    assert str(error.value).startswith("override 'model.architecture=esc' and ")
    assert "recipe value model.architecture='esc' does not fit this recipe's model section, which holds another " \
           "architecture's keys (model.analysis_n_fft, " in str(error.value)
    assert str(error.value).endswith("train an ESC recipe instead (inherit: esc_16k_small, or esc_16k)")
    with pytest.raises(CodecError, match=r"unknown key in recipe section 'model': model.num_codebooks"):
        load_recipe(REPO / "recipes" / "esc_16k.yaml", ["model.num_codebooks=8"])   # one stray key: as before
    # an ESC model's keys without its architecture: the fix is to name it (the default is conv)
    with pytest.raises(CodecError, match=re.escape(
            "the recipe's model section holds keys of the esc architecture (model.n_fft, model.subbands, model.dims) "
            "but no model.architecture, which is conv by default; add 'architecture: esc' to it")):
        load_recipe(REPO / "recipes" / "base.yaml", ["model.n_fft=640", "model.subbands=16", "model.dims=[64, 96]"])


def test_recipe_errors_name_where_the_value_was_set_the_sections_keys_and_the_nearest(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"inherit: {REPO / 'recipes' / 'tiny.yaml'}\nrun:\n  max_step: 5\n")
    with pytest.raises(CodecError) as error:
        load_recipe(mine)
    assert str(error.value).startswith(f"{mine}: unknown key in recipe section 'run': run.max_step (did you mean "
                                       f"run.max_steps?); its keys are out_dir, batch_size, max_steps, max_minutes,")
    with pytest.raises(CodecError, match=r"^override 'loss.mel_wieght=2': unknown key in recipe section 'loss': "
                                         r"loss.mel_wieght \(did you mean loss.mel_weight\?\); its keys are "
                                         r"mel_weight"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["loss.mel_wieght=2"])
    with pytest.raises(CodecError, match=r"^override 'modle.name=x': unknown recipe section 'modle' \(did you mean "
                                         r"model\?\); a codec recipe has the sections model, data, optim, loss, "
                                         r"gan, run"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["modle.name=x"])
    with pytest.raises(CodecError, match=r"^override 'run.max_steps=-1': recipe value run.max_steps=-1 must be"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps=-1"])
    inherited = tmp_path / "inherits_mine.yaml"   # a bad value in an inherited file: that file is named
    mine.write_text(f"inherit: {REPO / 'recipes' / 'tiny.yaml'}\nrun:\n  max_steps: -5\n")
    inherited.write_text(f"inherit: {mine}\noptim:\n  lr: 0.001\n")
    with pytest.raises(CodecError, match=rf"^{re.escape(str(mine))} \(inherited by {re.escape(str(inherited))}\): "
                                         rf"recipe value run.max_steps=-5 must be at least 0"):
        load_recipe(inherited)
    for value in ("transformer", "[conv]", "5"):
        with pytest.raises(CodecError, match=r"^override 'model.architecture=.*': recipe value model.architecture=.* "
                                             r"is not a codec architecture; choose conv or esc"):
            load_recipe(REPO / "recipes" / "tiny.yaml", [f"model.architecture={value}"])
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ["model.architecture=conv"]).model.name == "tiny-16k"
    with pytest.raises(CodecError, match=r"^override 'run.precision=bf17': recipe value run.precision='bf17' is not "
                                         r"supported; choose fp32 or bf16"):   # (it was found only by the trainer)
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.precision=bf17"])


def test_a_key_in_the_wrong_section_is_answered_with_the_section_that_has_it():
    with pytest.raises(CodecError, match=r"^override 'run.lr=1e-3': unknown key in recipe section 'run': run.lr "
                                         r"\(did you mean optim.lr\?\); its keys are out_dir"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.lr=1e-3"])
    with pytest.raises(CodecError, match=r"run.warmup_steps \(did you mean optim.warmup_steps\?\), "
                                         r"run.codebook_size \(did you mean model.codebook_size\?\);"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.warmup_steps=3", "run.codebook_size=8"])
    with pytest.raises(CodecError, match=r"entropy.lr \(did you mean optim.lr\?\)"):
        load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", ["entropy.lr=1e-3"])
    with pytest.raises(CodecError) as error:   # an entropy recipe lists the run keys it uses
        load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", ["run.lr=1e-3"])
    assert str(error.value).endswith("its keys are out_dir, batch_size, max_steps, max_minutes, log_every, "
                                     "checkpoint_minutes, seed, threads, init_from, device")


def test_a_list_written_without_brackets_is_refused_with_the_brackets_shown():
    with pytest.raises(CodecError, match=r"optim.betas='0.9,0.99' must be a list of numbers; write a list in "
                                         r"brackets: optim.betas=\[0.9, 0.99\]"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["optim.betas=0.9,0.99"])
    for written in ("(0.9,0.99)", "0.9, 0.99", "0.9 0.99", "0.9;0.99"):
        with pytest.raises(CodecError, match=r"write a list in brackets: optim.betas=\[0.9, 0.99\]$"):
            load_recipe(REPO / "recipes" / "tiny.yaml", [f"optim.betas={written}"])
    assert load_recipe(REPO / "recipes" / "tiny.yaml", ["optim.betas=[0.9, 0.99]"]).optim.betas == [0.9, 0.99]
    with pytest.raises(CodecError, match=r"^override 'run.max_steps=': recipe value run.max_steps is empty; it must "
                                         r"be int$"):
        load_recipe(REPO / "recipes" / "tiny.yaml", ["run.max_steps="])


def test_every_recipe_key_is_in_the_readmes_table():
    """The README's table of recipe keys lists each key of each section's config, and marks as codec
    only the keys that entropy recipes refuse."""
    import dataclasses

    from codec.entropy.model import EntropyModelConfig
    from codec.models.conv_codec import ConvCodecConfig
    from codec.models.esc_codec import EscCodecConfig
    from codec.train.entropy_trainer import CODEC_ONLY_KEYS, EntropyDataConfig
    from codec.train.recipe import DataConfig, GanConfig, LossConfig, OptimConfig, RunConfig

    rows = dict(re.findall(r"^  \| (`\w+`(?: \(\w+\))?) \| (.*) \|$", (REPO / "README.md").read_text(), flags=re.M))
    sections = {"`run`": RunConfig, "`data` (codec)": DataConfig, "`data` (entropy)": EntropyDataConfig,
                "`optim`": OptimConfig, "`loss`": LossConfig, "`gan`": GanConfig, "`model` (conv)": ConvCodecConfig,
                "`model` (esc)": EscCodecConfig, "`entropy`": EntropyModelConfig}
    for row, config in sections.items():
        listed = set(re.findall(r"`(\w+)`", rows[row]))
        missing = [f.name for f in dataclasses.fields(config) if f.name not in listed]
        assert not missing, f"README recipe keys, {row}: {missing}"
    codec_only = {f"{section}.{key}" for section in ("run", "optim")
                  for key in re.findall(r"`(\w+)` \(", rows[f"`{section}`"].partition("codec only:")[2])}
    assert codec_only == set(CODEC_ONLY_KEYS)


def test_training_notes_the_files_of_its_folder_that_it_skips(audio_folder, tmp_path):
    from codec.datasets import Skipped, find_inputs

    (audio_folder / "notes.txt").write_text("read me")
    (audio_folder / "nested" / "labels.json").write_text("{}")
    (audio_folder / "nested" / "more.txt").write_text("")
    (audio_folder / ".DS_Store").write_bytes(b"\0")
    (audio_folder / ".cache").mkdir()
    write_audio(audio_folder / ".cache" / "old.wav", tone(0.5, 16000), 16000)   # in a hidden folder: not read
    skipped = Skipped()
    assert len(find_inputs(audio_folder, skipped)) == 5
    assert skipped.summary() == ("skipped 3 files that are not audio (.txt, .json) and 2 hidden files or folders "
                                 "(.DS_Store, .cache)")
    report = io.StringIO()
    train(tiny(audio_folder, tmp_path / "run", "run.max_steps=1"), console=Console(file=report, width=400))
    assert "note: training data: skipped 3 files that are not audio (.txt, .json) and 2 hidden files or folders" \
        in report.getvalue()
    lone = Skipped([tmp_path / "README"])
    assert lone.summary() == "skipped 1 file that is not audio (no suffix)"
    recorded = Skipped([tmp_path / "a.m4a", tmp_path / "b.m4a", tmp_path / "c.aac"])
    assert recorded.summary() == ("skipped 3 audio files in formats not read (.m4a, .aac: convert them first, e.g. "
                                  "ffmpeg -i in.m4a in.wav)")
    assert Skipped([tmp_path / "a.m4a", tmp_path / "b.pcm"]).summary() == (   # each kind its command
        "skipped 2 audio files in formats not read (.m4a, .pcm: convert them first, e.g. ffmpeg -i in.m4a in.wav; "
        "wrap raw PCM as WAV, e.g. ffmpeg -f s16le -ar 16000 -ac 1 -i in.raw in.wav)")
    assert Skipped([tmp_path / "a.raw"]).summary("audio") == (
        "skipped 1 audio file in a format not read (.raw: wrap raw PCM as WAV, e.g. ffmpeg -f s16le -ar 16000 -ac 1 "
        "-i in.raw in.wav)")
    kind = ("a .codes file or saved stream", ".codes files or saved streams")   # decoding: no hint for audio
    assert Skipped([tmp_path / "a.m4a"]).summary(kind) == \
        "skipped 1 file that is not a .codes file or saved stream (.m4a)"
    assert Skipped([tmp_path / "a.txt"] * 2).summary(kind) == \
        "skipped 2 files that are not .codes files or saved streams (.txt)"
    assert Skipped().summary() is None


def test_a_run_folder_that_cannot_be_written_is_named_with_its_recipe_before_any_work(tmp_path):
    from codec.train import train_any
    from tests.conftest import run_cli

    (tmp_path / "a-file").write_text("not a folder")
    out_dir, missing = tmp_path / "a-file" / "run", tmp_path / "no-data"   # (the data would fail if read first)
    with pytest.raises(CodecError, match=rf"^override 'run.out_dir={re.escape(str(out_dir))}': cannot write a run "
                                         rf"there \({re.escape(str(tmp_path / 'a-file'))} is a file, not a folder\)"):
        train_any(tiny(missing, out_dir))
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"inherit: {REPO / 'recipes' / 'tiny.yaml'}\nrun:\n  out_dir: {out_dir}\ndata:\n"
                      f"  train_dir: {missing}\n")
    result = run_cli("train", recipe)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {recipe}: recipe value run.out_dir={out_dir}: cannot "
                                                  f"write a run there ({tmp_path / 'a-file'} is a file, not a folder); "
                                                  f"give a folder that can be written"]
    from codec.train.entropy_trainer import train_entropy

    with pytest.raises(CodecError, match=r"recipe value run.out_dir=.*: cannot write a run there"):
        train_entropy(load_recipe(REPO / "recipes" / "entropy_conv_16k.yaml", [f"run.out_dir={out_dir}"]))


@pytest.mark.skipif(os.name != "posix", reason="file names of any bytes are a POSIX file system's")
def test_a_run_that_stops_on_an_error_leaves_no_empty_folders_it_made(tmp_path):
    from codec.train import train_any

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "empty").mkdir()   # found only once the run's folder is made
    with pytest.raises(CodecError, match="no audio files"):
        train_any(tiny(tmp_path / "kept" / "empty", tmp_path / "kept" / "runs" / "new"))
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["empty"]


def test_a_run_folder_whose_path_is_not_utf8_is_refused_before_any_work(tmp_path):
    """TensorBoard's log writer took it as far as its first event file, then an internal error."""
    from codec.train import train_any

    out_dir, missing = tmp_path / os.fsdecode(b"caf\xe9"), tmp_path / "no-data"
    with pytest.raises(CodecError, match=r"run.out_dir=.*caf.*: the TensorBoard log writer needs a folder whose "
                                         r"path is UTF-8 text"):
        train_any(tiny(missing, out_dir))
    assert not out_dir.exists()


def test_resume_mismatches_are_found_before_the_data_loads(audio_folder, tmp_path):
    """A large training set takes minutes to load: the folder does not even exist when resuming here."""
    out, missing = tmp_path / "run", tmp_path / "no-data"
    train(tiny(audio_folder, out, "run.max_steps=1", "optim.ema_decay=0.9"))
    with pytest.raises(CodecError, match=r"does not fit this recipe \(changed: model.latent_dim=16 -> 8\)"):
        train(tiny(missing, out, "run.max_steps=2", "optim.ema_decay=0.9", "model.latent_dim=8"), resume=True)
    with pytest.raises(CodecError, match=r"keeps a moving average of its weights \(optim.ema_decay=0.9\)"):
        train(tiny(missing, out, "run.max_steps=2"), resume=True)
    report = io.StringIO()   # nothing left to train: said without reading the data
    train(tiny(missing, out, "run.max_steps=1", "optim.ema_decay=0.9"), resume=True,
          console=Console(file=report, width=400))
    assert "nothing to train" in report.getvalue()
    gan = ["run.tensorboard=false", "gan.enabled=true", "gan.channels=4", "gan.periods=[2]", "gan.stft_windows=[256]"]
    train(tiny(audio_folder, tmp_path / "gan", "run.max_steps=1", *gan))
    with pytest.raises(CodecError, match=r"its discriminators do not fit this recipe \(changed: gan.channels=4 -> 8\); "
                                         r"--resume needs the checkpoint's gan section"):   # (an internal error)
        train(tiny(missing, tmp_path / "gan", "run.max_steps=2", *gan, "gan.channels=8"), resume=True)


def test_a_shipped_recipe_trains_and_is_inherited_by_its_name_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("tiny", "tiny.yaml"):
        assert load_recipe(name).origins.recipe == str(REPO / "recipes" / "tiny.yaml")
    (tmp_path / "mine.yaml").write_text("inherit: tiny\nrun:\n  max_steps: 7\n")
    mine = load_recipe(tmp_path / "mine.yaml")
    assert (mine.model.name, mine.run.max_steps) == ("tiny-16k", 7)
    (tmp_path / "tiny").mkdir()   # a folder of that name (a run's out_dir) is not a recipe: the shipped one
    assert load_recipe("tiny").origins.recipe == str(REPO / "recipes" / "tiny.yaml")
    (tmp_path / "tiny.yaml").write_text("inherit: tiny\nrun:\n  max_steps: 3\n")   # (the shipped tiny)
    for name in ("tiny", "tiny.yaml"):   # a file of that name here comes first
        assert (load_recipe(name).origins.recipe, load_recipe(name).run.max_steps) == ("tiny.yaml", 3)
    assert load_recipe(tmp_path / "mine.yaml").run.max_steps == 7   # (and beside the recipe that inherits it)
    (tmp_path / "tiny.yaml").unlink()
    with pytest.raises(CodecError, match=r"^tiny.yaml: recipe not found"):
        load_recipe("./tiny.yaml")   # ./ makes it a path
    with pytest.raises(CodecError, match=r"^the recipe name is empty"):
        load_recipe(" ")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")   # it would train the built-in defaults until stopped
    with pytest.raises(CodecError, match=r"^empty.yaml: the recipe is empty; give it sections, or 'inherit: NAME'"):
        load_recipe("empty.yaml")
    with pytest.raises(CodecError, match=r"^tinyy: recipe not found \(did you mean tiny\? a shipped recipe can be "
                                         r"named alone, such as conv_16k, esc_16k_small"):
        load_recipe("tinyy")
    with pytest.raises(CodecError, match=r"^recipes/tiny.yaml: recipe not found \(a shipped recipe has that name: "
                                         r"codec train tiny\)$"):
        load_recipe("recipes/tiny.yaml")   # a path is a path (here: outside the checkout)
    with pytest.raises(CodecError, match=r"^TINY: recipe not found \(did you mean tiny\?"):
        load_recipe("TINY")


def test_the_run_header_gives_a_few_clips_in_seconds_as_the_too_little_audio_warning_does():
    from codec.train.trainer import _duration

    assert [_duration(seconds / 3600) for seconds in (0.25, 9.5, 162.44)] == ["0.25 s", "9.50 s", "162.4 s"]
    assert _duration(2.64) == "2.64 h"


def test_a_model_trained_or_fine_tuned_under_a_shipped_name_is_noted(tmp_path):
    from codec.train.trainer import _shipped_name_note

    # (from scratch or a fine-tune: the shipped weights refuse this run's codes either way)
    note = _shipped_name_note("esc-16k-small", tmp_path)
    assert note.startswith("model.name 'esc-16k-small' is a shipped model's name too") and \
        f"--model {tmp_path / 'model'}" in note
    assert _shipped_name_note("my-codec", tmp_path) is None


def test_a_key_overridden_twice_is_warned_of():
    from codec.train.recipe import overridden_twice
    from tests.conftest import run_cli

    assert overridden_twice(["run.max_steps=10", "run.seed=1", "run.max_steps = 20", "run.seed=1"]) == \
        ["-o run.max_steps is given 2 times ('run.max_steps=10', 'run.max_steps = 20'); the last is used"]
    result = run_cli("train", "tiny", "-o", "run.max_steps=1", "-o", "run.max_steps=x")
    assert "warning: -o run.max_steps is given 2 times ('run.max_steps=1', 'run.max_steps=x'); the last is " \
           "used" in " ".join(result.output.split())
    assert result.exit_code == 1 and "run.max_steps='x' must be int" in result.output


def test_init_from_names_layers_in_number_order():
    from codec.train.trainer import _in_number_order

    names = ["quantizer.layers.10.codebook", "quantizer.layers.8.codebook", "quantizer.layers.9.codebook"]
    assert sorted(names, key=_in_number_order)[0] == "quantizer.layers.8.codebook"   # (as text: layers.10)


def test_an_error_about_an_override_gives_its_value_once():
    from codec.train.recipe import RecipeOrigins

    origins = RecipeOrigins("r.yaml", {"data.train_dir": "override 'data.train_dir=x.tsv'"})
    assert origins.locate("recipe value data.train_dir=x.tsv: the manifest lists no files") == \
        "override 'data.train_dir=x.tsv': the manifest lists no files"
    assert origins.locate("recipe value data.train_dir=x.tsv (relative to the current folder, /w): no such file") \
        .startswith("override 'data.train_dir=x.tsv': recipe value data.train_dir=x.tsv (relative")   # (it adds)


def test_a_run_keeps_its_resolved_recipe_to_resume_with(audio_folder, tmp_path, monkeypatch):
    """Overrides included, loadable as a recipe, rewritten at each start; a user's file of that
    name is kept; a run's folder or checkpoint given as the recipe names the command."""
    from typer.testing import CliRunner

    from cli.main import app
    from codec.train.run_recipe import RUN_RECIPE

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    recipe = tiny(audio_folder, "run", "run.max_steps=1", "optim.lr=0.002")   # relative to tmp_path
    train(recipe, console=Console(file=io.StringIO()))
    saved = run / RUN_RECIPE
    assert saved.read_text().startswith("# The values this run trains with")
    resumed = load_recipe(saved, ["run.max_steps=2"])
    assert resumed.optim.lr == 0.002 and resumed.data.train_dir == str(audio_folder)
    train(resumed, resume=True, console=Console(file=io.StringIO()))
    assert json.loads((run / "train.log").read_text().splitlines()[-1])["step"] == 2
    assert f"(recipe {REPO / 'recipes' / 'tiny.yaml'})" in saved.read_text().partition("\n")[0]   # where it began
    for given in (run, run / CHECKPOINT_FILE, run / "model", run / "model" / "config.json"):
        result = CliRunner().invoke(app, ["train", str(given)])
        assert result.exit_code == 1 and f"to resume it with the values it trained with: codec train {saved} " \
            f"--resume" in " ".join(result.output.split())
    elsewhere = tmp_path / "elsewhere"   # paths that named something are absolute: resumed from any folder
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    train(load_recipe(saved, ["run.max_steps=3"]), resume=True, console=Console(file=io.StringIO()))
    assert json.loads((run / "train.log").read_text().splitlines()[-1])["step"] == 3
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / RUN_RECIPE).write_text("inherit: tiny\n# my notes\n")
    report = io.StringIO()
    train(tiny(audio_folder, mine, "run.max_steps=1"), console=Console(file=report, width=300))
    assert (mine / RUN_RECIPE).read_text() == "inherit: tiny\n# my notes\n"
    assert f"warning: {mine / RUN_RECIPE} is not one codec train wrote" in report.getvalue()
    result = CliRunner().invoke(app, ["train", str(mine)])   # not offered as the run's recipe
    assert "-o run.out_dir=" in " ".join(result.output.split()) and RUN_RECIPE not in result.output
    result = CliRunner().invoke(app, ["train", str(audio_folder)])
    assert f"codec train tiny -o data.train_dir={audio_folder}" in " ".join(result.output.split())
    shutil.copytree(run / "model", tmp_path / "copied")   # a model outside its run: trained on from
    result = CliRunner().invoke(app, ["train", str(tmp_path / "copied")])
    assert f"it is a trained model (codec encode --model {tmp_path / 'copied'} uses it); to train on from its " \
           f"weights, give a recipe of its architecture with -o run.init_from={tmp_path / 'copied'}" \
           in " ".join(result.output.split())


def test_a_copied_or_moved_run_resumes_in_its_own_folder(audio_folder, tmp_path):
    """Its resolved recipe names the folder the run was in: resumed from there, it trained the
    original run on and wrote over its checkpoint (or, moved, found none), and the copy stayed as it was."""
    from codec.train.run_recipe import RUN_RECIPE

    train(tiny(audio_folder, tmp_path / "run", "run.max_steps=1"), console=Console(file=io.StringIO()))
    copy = shutil.copytree(tmp_path / "run", tmp_path / "copy")
    report = io.StringIO()
    train(load_recipe(copy / RUN_RECIPE, ["run.max_steps=2"]), resume=True, console=Console(file=report, width=400))
    assert torch.load(copy / CHECKPOINT_FILE, weights_only=True)["step"] == 2
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["step"] == 1   # the original untouched
    assert f"note: {copy / RUN_RECIPE} names run.out_dir {tmp_path / 'run'}, the folder the run was in; it is in " \
           f"{copy} now (copied or moved), and trains there" in report.getvalue()
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    train(load_recipe(moved / RUN_RECIPE, ["run.max_steps=2"]), resume=True, console=Console(file=io.StringIO()))
    assert torch.load(moved / CHECKPOINT_FILE, weights_only=True)["step"] == 2
    report = io.StringIO()   # its own folder again: nothing to note
    train(load_recipe(moved / RUN_RECIPE, ["run.max_steps=3"]), resume=True, console=Console(file=report, width=400))
    assert "note:" not in report.getvalue()
    elsewhere = tmp_path / "elsewhere"   # an -o run.out_dir still decides, with nothing to note
    branched = load_recipe(copy / RUN_RECIPE, [f"run.out_dir={elsewhere}"])
    assert branched.run.out_dir == str(elsewhere) and branched.origins.notes == []


def test_an_init_from_given_on_resume_is_named_unused(audio_folder, tmp_path):
    # (it was left out of the values that differ, as where a run started from, and so ignored without a word)
    run = tmp_path / "run"
    train(tiny(audio_folder, run, "run.max_steps=1"), console=Console(file=io.StringIO()))
    report = io.StringIO()
    train(tiny(audio_folder, run, "run.max_steps=2", f"run.init_from={run / 'model'}"), resume=True,
          console=Console(file=report, width=400))
    assert f"note: run.init_from='{run / 'model'}' unused: --resume goes on from the weights in " \
           f"{run / CHECKPOINT_FILE}" in report.getvalue()
    report = io.StringIO()
    train(tiny(audio_folder, run, "run.max_steps=3"), resume=True, console=Console(file=report, width=400))
    assert "unused" not in report.getvalue()


def test_resuming_from_another_folder_does_not_take_a_relative_data_folder_for_a_change(audio_folder, tmp_path,
                                                                                         monkeypatch):
    # the checkpoint keeps the recipe as given (data.train_dir=audio, relative) and the run's recipe
    # file the absolute path: resumed from elsewhere, they are the same folder, not a changed value
    from codec.train.run_recipe import RUN_RECIPE

    monkeypatch.chdir(tmp_path)
    train(tiny("audio", "run", "run.max_steps=1"), console=Console(file=io.StringIO()))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    report = io.StringIO()
    train(load_recipe(tmp_path / "run" / RUN_RECIPE, ["run.max_steps=2"]), resume=True,
          console=Console(file=report, width=300))
    assert "values that differ" not in report.getvalue()
    report = io.StringIO()   # a folder that is another one is still named
    other = shutil.copytree(audio_folder, tmp_path / "other")
    train(load_recipe(tmp_path / "run" / RUN_RECIPE, ["run.max_steps=3", f"data.train_dir={other}"]), resume=True,
          console=Console(file=report, width=300))
    assert f"data.train_dir='{tmp_path / 'audio'}' -> '{other}'" in report.getvalue()
    monkeypatch.chdir(tmp_path)   # and so is the same spelling from another folder, where it names another
    train(tiny("audio", tmp_path / "second", "run.max_steps=1"), console=Console(file=io.StringIO()))
    shutil.copytree(audio_folder, tmp_path / "elsewhere" / "audio")
    monkeypatch.chdir(tmp_path / "elsewhere")
    report = io.StringIO()
    train(tiny("audio", tmp_path / "second", "run.max_steps=2"), resume=True, console=Console(file=report, width=300))
    assert "data.train_dir='audio' -> 'audio'" in report.getvalue()


def test_a_run_folder_inside_the_training_folder_is_warned_of(audio_folder, tmp_path):
    report = io.StringIO()
    train(tiny(audio_folder, audio_folder / "run", "run.max_steps=1"), console=Console(file=report, width=300))
    assert f"warning: run.out_dir {audio_folder / 'run'} is inside data.train_dir {audio_folder}: the run's " \
           f"checkpoint, model and logs are written among the training audio" in report.getvalue()
    report = io.StringIO()
    train(tiny(audio_folder, tmp_path / "apart", "run.max_steps=1"), console=Console(file=report, width=300))
    assert "is inside data.train_dir" not in report.getvalue()


def test_recipes_that_start_from_the_default_model_keep_its_input_level_and_high_pass():
    """A model trained on from the shipped weights must do before its network what the shipped one
    does: without its level and high-pass, even a frozen encoder writes other codes."""
    from codec.models.loading import load_model

    shipped = load_model("esc-16k-small").config

    def inherited(path):   # the recipes that path inherits, nearest first
        while match := re.search(r"^inherit: (\S+)$", path.read_text(), re.MULTILINE):
            path = path.parent / match[1]
            yield path.name

    # from the shipped weights, or from copies grown from them (scripts/grow_decoder.py) by recipes on
    # the fifth cycle's
    starting_there = [path for path in sorted((REPO / "recipes").glob("*.yaml"))
                      if load_recipe(path).run.init_from in ("esc-16k-small", "models/esc-16k-small")
                      or "esc_16k_small_5.yaml" in inherited(path) and path.name != "esc_16k_small_shipped.yaml"]
    assert len(starting_there) >= 22 and REPO / "recipes" / "esc_16k_small_grown.yaml" in starting_there
    for path in starting_there:
        model = load_recipe(path).model
        assert (model.input_level_dbfs, model.input_highpass_hz) == \
            (shipped.input_level_dbfs, shipped.input_highpass_hz), path.name


def test_a_compiled_run_prints_no_graph_break_warnings(audio_folder, tmp_path):
    """run.compile: the quantizers' data-dependent bookkeeping is left out of the graphs; each of its
    .item() calls had printed a dozen lines of torch warnings that looked like a traceback."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "codec", "train", str(REPO / "recipes" / "tiny.yaml"),
                             "-o", f"data.train_dir={audio_folder}", "-o", f"run.out_dir={tmp_path / 'run'}",
                             "-o", "run.max_steps=1", "-o", "run.compile=true"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "finished at step 1" in result.stderr + result.stdout
    assert "Graph break" not in result.stderr + result.stdout


def test_the_torchrun_entry_point_logs_unwrapped_lines(audio_folder, tmp_path):
    """``python -m codec.train`` (what torchrun runs) writes its log as codec train does: one line
    per message however long, where rich had wrapped piped output at 80 columns."""
    import subprocess

    out_dir = tmp_path / ("a-long-folder-name-for-this-run" * 3)
    result = subprocess.run([sys.executable, "-m", "codec.train", str(REPO / "recipes" / "tiny.yaml"),
                             "-o", f"data.train_dir={audio_folder}", "-o", f"run.out_dir={out_dir}",
                             "-o", "run.max_steps=1"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("training tiny-16k") and line.endswith(str(out_dir))
               for line in result.stderr.splitlines()), result.stderr
