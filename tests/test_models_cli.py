"""``codec models`` and ``codec info MODEL``: what a model is, from its files."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from codec.models.loading import DEFAULT_MODEL, weights_hash
from tests.conftest import REPO, tone, write_audio
from tests.conftest import run_cli as invoke


def test_models_lists_the_shipped_model_with_its_measured_pesq():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.stdout)}
    default = models[DEFAULT_MODEL]
    assert default["default"] and default["source"] == "shipped" and default["sample_rate"] == 16000
    assert [m["name"] for m in models.values() if m["default"]] == [DEFAULT_MODEL]
    assert default["bitrates_kbps"] == [1.5, 3.0, 6.0, 12.0]
    card = json.loads((REPO / "models" / DEFAULT_MODEL / "metrics.json").read_text())
    assert default["parameters"] == card["parameters"]
    at_6 = next(s["mean"]["pesq_wb"] for s in card["dev"] if s["system"] == DEFAULT_MODEL and s["nominal_kbps"] == 6)
    assert set(default["pesq_wb"]) == {"1.5", "3", "6", "12"}
    assert default["pesq_wb"]["6"] == pytest.approx(at_6, abs=0.01)
    table = invoke("models")
    assert table.exit_code == 0 and f"{DEFAULT_MODEL} (default)" in table.stdout and f"6: {at_6:.2f}" in table.stdout
    assert models["conv-16k"]["latency_ms"] == 30 and models["conv-16k"]["entropy_model"]
    shipped = json.loads((REPO / "models" / DEFAULT_MODEL / "config.json").read_text())
    assert default["input_highpass_hz"] == shipped["input_highpass_hz"] and default["input_level_dbfs"] == -18
    assert models["conv-16k"]["input_highpass_hz"] is None and models["conv-16k"]["input_level_dbfs"] is None


def test_info_names_the_quantizer_family_and_an_entropy_model_of_another_codec(tiny_model_dir, tmp_path):
    model = tmp_path / "tico"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "masked_quantizers": 2, "global_groups": 4}))
    entropy = {"name": "entropy-x", "codec": "other-16k", "num_codebooks": 24, "codebook_size": 1024}
    (model / "entropy_config.json").write_text(json.dumps(entropy))
    (model / "entropy.safetensors").write_bytes(b"")
    info = json.loads(invoke("info", model, "--json").stdout)
    assert info["architecture"] == "conv" and info["quantizer"] == (
        "masked-channel residual VQ (the first 2 on 1/2 of the channels each) + time-invariant global code "
        "(4 codebooks of 256)")
    assert info["entropy_model"] is False
    assert info["entropy_problem"].startswith("entropy model 'entropy-x' was trained on the codes of 'other-16k'")
    shipped = json.loads(invoke("info", DEFAULT_MODEL, "--json").stdout)
    assert shipped["architecture"] == "esc" and shipped["quantizer"].startswith("cross-scale residual VQ (3 + 3 + 18")
    assert shipped["entropy_problem"] is None


def test_models_table_rounds_as_the_model_cards_do():
    """Each figure is the card's mean rounded once to 2 decimals (rounding to 3 first turned
    esc-16k's 2.4252 into 2.42 where its card says 2.43)."""
    table = re.sub(r"\s+", " ", invoke("models").stdout)
    for name in ("conv-16k", "esc-16k", DEFAULT_MODEL):
        card = json.loads((REPO / "models" / name / "metrics.json").read_text())
        for row in card["dev"]:
            if row["system"] == name:
                assert f"{row['nominal_kbps']:g}: {row['mean']['pesq_wb']:.2f}" in table, (name, row["nominal_kbps"])
        listing = re.sub(r"\s+", " ", invoke("info", name).stdout)   # info as models: 2 decimals
        assert ", ".join(f"{row['nominal_kbps']:g}: {row['mean']['pesq_wb']:.2f}" for row in card["dev"]
                         if row["system"] == name) in listing, name


def test_models_fit_a_narrow_terminal_with_every_name_whole():
    from rich.console import Console

    from cli.main import _models_table
    from codec.models.catalog import list_models

    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(_models_table(list_models(), console.width))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert f"{DEFAULT_MODEL} (default)" in text and "conv-16k " in text and "codec models --json" in text
    assert "…" not in text


def test_help_names_the_default_model():
    """The CLI's help states the default by name (typed out there: importing it would load torch)."""
    for command in ("encode", "export"):
        result = invoke(command, "--help")
        text = re.sub(r"[│\s]+", " ", result.stdout)   # rich wraps the help in a box
        assert result.exit_code == 0 and f"default: {DEFAULT_MODEL}" in text, command


def test_dash_h_is_help_too():
    for command in ([], ["encode"], ["eval"], ["train"]):
        result = invoke(*command, "-h")
        assert result.exit_code == 0 and "Usage: " in result.stdout and "Options" in result.stdout, command


def test_help_shows_no_value_placeholder_for_flags():
    """A flag takes no value, so the help names no type after it (typer 0.29 printed <bool>)."""
    for command in ("encode", "decode", "eval", "stream", "export"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "<bool>" not in result.stdout and "--force" in result.stdout, command


def test_installed_models_are_listed_and_loadable_by_name(tiny_model_dir, tmp_path, monkeypatch):
    installed = tmp_path / "installed"
    shutil.copytree(tiny_model_dir, installed / "tiny-16k")
    monkeypatch.setenv("CODEC_MODELS_DIR", str(installed))
    models = {m["name"]: m for m in json.loads(invoke("models", "--json").stdout)}
    assert models["tiny-16k"]["source"] == "installed" and models["tiny-16k"]["pesq_wb"] == {}
    assert models["conv-16k"]["source"] == "shipped"  # still found beside the installed ones
    result = invoke("info", "tiny-16k", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["directory"] == str(installed / "tiny-16k")


def test_info_on_a_model_directory(tiny_model, tiny_model_dir):
    result = invoke("info", tiny_model_dir, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["name"] == "tiny-16k" and info["source"] == "directory"
    assert info["weights_sha256"] == weights_hash(tiny_model_dir)
    assert info["parameters"] == sum(p.numel() for p in tiny_model.parameters())
    assert info["latency_ms"] == pytest.approx(1000 * tiny_model.latency / tiny_model.sample_rate)
    assert info["frame_rate"] == tiny_model.frame_rate and info["codebooks"] == tiny_model.num_codebooks
    assert info["entropy_model"] is False
    text = invoke("info", tiny_model_dir)
    assert text.exit_code == 0 and "weights_sha256" in text.stdout and "bitrates_kbps" in text.stdout


def test_a_training_runs_folder_points_at_its_model(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    speech_wav = write_audio(tmp_path / "s.wav", tone(0.5, 16000), 16000)
    (tmp_path / "runs" / "done").mkdir(parents=True)
    shutil.copytree(tiny_model_dir, tmp_path / "runs" / "done" / "model")
    result = invoke("encode", speech_wav, "x.codes", "--model", "runs/done")
    assert result.exit_code == 1 and "its trained model is runs/done/model" in result.output
    (tmp_path / "runs" / "new").mkdir()
    (tmp_path / "runs" / "new" / "train.log").touch()   # started, no checkpoint yet
    result = invoke("encode", speech_wav, "x.codes", "--model", "runs/new/model")
    assert result.exit_code == 1 and "runs/new/model: no such model directory yet (a training run writes it" \
        in result.output and "e.g. runs/NAME/model" not in result.output
    (tmp_path / "runs" / "done" / "checkpoint.pt").write_bytes(b"x")   # a run's checkpoint, or the model's weights
    for given in ("runs/done/checkpoint.pt", *(f"runs/done/model/{p.name}" for p in tiny_model_dir.iterdir())):
        result = invoke("encode", speech_wav, "x.codes", "--model", given)
        assert result.exit_code == 1 and f"{given}: is a file, not a model directory; give the model directory " \
            "runs/done/model" in result.output, result.output
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "codec.json").write_text("{}")
    result = invoke("encode", speech_wav, "x.codes", "--model", "exported")
    assert result.exit_code == 1 and "exported: not a model directory (it has no config.json), and no shipped " \
        "model has that name; it is an ONNX export (codec export)" in result.output, result.output
    (tmp_path / "entropy-run" / "model").mkdir(parents=True)   # an entropy model's run: no codec there
    (tmp_path / "entropy-run" / "model" / "entropy_config.json").write_text("{}")
    result = invoke("encode", speech_wav, "x.codes", "--model", "entropy-run/model")
    assert result.exit_code == 1 and "it holds an entropy model (entropy_config.json), which a codec uses from its " \
        "own model directory: copy entropy.safetensors and entropy_config.json beside" in result.output, result.output


def test_info_names_what_it_could_not_find(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    result = invoke("info", "no-such-thing")
    assert result.exit_code == 1 and "no such file, and no model has that name (by name: conv-16k" in result.output
    (tmp_path / "codes").mkdir()   # a batch's output folder
    (tmp_path / "codes" / "a.codes").write_bytes(b"")
    result = invoke("info", "codes")
    assert result.exit_code == 1 and "codes: not a model directory (it has no config.json), and no shipped model " \
        f"has that name; it holds .codes files (codec info and codec decode take one, such as " \
        f"{Path('codes') / 'a.codes'})" in result.output
    (tmp_path / "noweights").mkdir()   # a config without its weights
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "noweights")
    speech_wav = write_audio(tmp_path / "s.wav", tone(0.5, 16000), 16000)
    for command in (("info", "noweights"), ("encode", speech_wav, "x.codes", "--model", "noweights")):
        result = invoke(*command)
        assert result.exit_code == 1 and "noweights: has config.json but no model.safetensors (the weights)" \
            in result.output, result.output
    result = invoke("info", "tiny-16k")   # no near name: "-16k" alone is not near
    assert result.exit_code == 1 and "did you mean" not in result.output
    monkeypatch.setenv("CODEC_MODELS_DIR", str(tmp_path / "typo"))
    result = invoke("info", "mine")
    assert result.exit_code == 1 and f"CODEC_MODELS_DIR={tmp_path / 'typo'}: no such folder)" in result.output
    monkeypatch.delenv("CODEC_MODELS_DIR")
    result = invoke("info", "ESC-16K-SMAL")   # a near name, case aside
    assert result.exit_code == 1 and "no model has that name (did you mean esc-16k-small? by name: conv-16k" \
        in result.output, result.output
    (tmp_path / "empty").mkdir()
    result = invoke("info", "empty")
    assert result.exit_code == 1 and "not a model directory (it has no config.json)" in result.output
    assert len(result.output.strip().splitlines()) == 1



def test_the_model_a_file_names_is_looked_up_by_name_only(tiny_model_dir, tmp_path, monkeypatch):
    """A .codes file's model name never selects a folder by path, nor one in the working directory."""
    import dataclasses

    import codec as api
    from tests.conftest import tone

    codes = api.load_model(tiny_model_dir).encode(tone(0.3, 16000), 16000)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "tiny-16k")      # a folder here with the file's model name
    for name, message in [("tiny-16k", "model 'tiny-16k' not found: no shipped or installed model has that name"),
                          ("../tiny-16k", "the file names its model '../tiny-16k', which is not a model's name")]:
        api.Codes(dataclasses.replace(codes.metadata, model=name), codes.codes).save(tmp_path / "a.codes")
        result = invoke("decode", tmp_path / "a.codes", tmp_path / "a.wav")
        assert result.exit_code == 1 and message in result.output and "--model" in result.output
    assert not (tmp_path / "a.wav").exists()


def test_info_on_a_damaged_installed_model_says_what_is_wrong(tiny_model_dir, tmp_path, monkeypatch):
    installed = tmp_path / "installed"
    shutil.copytree(tiny_model_dir, installed / "mine")
    monkeypatch.setenv("CODEC_MODELS_DIR", str(installed))
    monkeypatch.chdir(tmp_path)
    (installed / "mine" / "model.safetensors").write_bytes(b"garbage!")
    result = invoke("info", "mine")
    assert result.exit_code == 1 and "cannot read the model (model.safetensors is not a safetensors" in result.output
    (installed / "mine" / "config.json").write_text("{")
    result = invoke("info", "mine")
    assert result.exit_code == 1 and "mine/config.json: is not valid JSON" in result.output
    (installed / "mine" / "config.json").write_text("[1, 2]")
    for command in (["info", "mine"], ["encode", "x.wav", "x.codes", "--model", "mine"]):
        result = invoke(*command)
        assert result.exit_code == 1 and "the config is not a JSON object but a list" in result.output
    assert "no model has that name" not in result.output


def test_a_file_from_a_model_installed_under_another_folder_name_decodes_by_itself(tiny_model_dir, tmp_path,
                                                                                    monkeypatch):
    """The file names the model's config name (tiny-16k); its folder here is 'mine', so decoding
    finds the folder whose config has that name and whose weights match."""
    from tests.conftest import tone, write_audio

    installed = tmp_path / "installed"
    shutil.copytree(tiny_model_dir, installed / "mine")
    monkeypatch.setenv("CODEC_MODELS_DIR", str(installed))
    source = write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    assert invoke("encode", source, tmp_path / "a.codes", "--model", "mine").exit_code == 0
    result = invoke("decode", tmp_path / "a.codes", tmp_path / "a.wav")
    assert result.exit_code == 0, result.output
    for name in ("tiny-16k", "mine"):   # the name the file (and codec info) shows works as --model too
        result = invoke("decode", tmp_path / "a.codes", tmp_path / f"by-{name}.wav", "--model", name)
        assert result.exit_code == 0, result.output
    (installed / "mine" / "config.json").write_text("{}")   # no folder has the file's model now
    result = invoke("decode", tmp_path / "a.codes", tmp_path / "b.wav")
    assert result.exit_code == 1 and "model 'tiny-16k' not found" in result.output


def test_a_fine_tune_that_kept_the_shipped_name_decodes_its_own_files(tiny_model_dir, tmp_path, monkeypatch):
    """Two installed folders whose configs name tiny-16k: a file goes to the one whose weights
    made it, whichever comes first in the folder listing."""
    import torch

    from codec.models import load_model, ship_model
    from tests.conftest import tone, write_audio

    installed = tmp_path / "installed"
    shutil.copytree(tiny_model_dir, installed / "tiny-16k")
    tuned = load_model(tiny_model_dir)
    with torch.no_grad():
        next(tuned.encoder.parameters()).add_(0.01)
    ship_model(tuned, installed / "a-tuned")   # listed before tiny-16k
    monkeypatch.setenv("CODEC_MODELS_DIR", str(installed))
    source = write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    for folder in ("a-tuned", "tiny-16k"):
        assert invoke("encode", source, tmp_path / f"{folder}.codes", "--model", folder).exit_code == 0
        result = invoke("decode", tmp_path / f"{folder}.codes", tmp_path / f"{folder}.wav")
        assert result.exit_code == 0, result.output


def test_an_installed_model_of_a_shipped_folder_name_does_not_hide_the_shipped_one(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    import torch

    import codec.models.loading as loading
    from codec.models import load_model, ship_model
    from tests.conftest import tone, write_audio

    shipped, installed = tmp_path / "shipped", tmp_path / "installed"
    shutil.copytree(tiny_model_dir, shipped / "tiny-16k")
    tuned = load_model(tiny_model_dir)
    with torch.no_grad():
        next(tuned.encoder.parameters()).add_(0.01)
    ship_model(tuned, installed / "tiny-16k")   # found first by that name
    monkeypatch.setattr(loading, "shipped_models_dir", lambda: shipped)
    monkeypatch.setenv("CODEC_MODELS_DIR", str(installed))
    source = write_audio(tmp_path / "in.wav", tone(0.5, 16000), 16000)
    for folder in (shipped, installed):
        codes = tmp_path / f"{folder.name}.codes"
        assert invoke("encode", source, codes, "--model", folder / "tiny-16k").exit_code == 0
        result = invoke("decode", codes, tmp_path / f"{folder.name}.wav")
        assert result.exit_code == 0, result.output


def test_a_models_folder_that_is_not_there_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEC_MODELS_DIR", str(tmp_path / "typo"))
    result = invoke("models", "--json")
    assert result.exit_code == 0 and DEFAULT_MODEL in {m["name"] for m in json.loads(result.stdout)}
    assert f"warning: CODEC_MODELS_DIR={tmp_path / 'typo'}: no such folder; no installed models listed" in result.output
    (tmp_path / "typo").write_text("a file")
    result = invoke("models", "--json")
    assert f"warning: CODEC_MODELS_DIR={tmp_path / 'typo'}: is a file, not a folder" in result.output


def test_a_models_folder_of_training_runs_is_told_where_their_models_are(tmp_path, tiny_model_dir, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_model_dir, runs / "first" / "model")
    monkeypatch.setenv("CODEC_MODELS_DIR", str(runs))
    result = invoke("models", "--json")
    assert result.exit_code == 0
    assert f"note: CODEC_MODELS_DIR={runs} holds no model folders (a model folder holds config.json and " \
           f"model.safetensors); training runs keep theirs in RUN/model (such as {runs / 'first' / 'model'}): " \
           f"--model takes that folder" in " ".join(result.output.split())
    monkeypatch.setenv("CODEC_MODELS_DIR", str(runs / "first"))   # a folder of models: no note
    assert "note:" not in invoke("models", "--json").output
    monkeypatch.setenv("CODEC_MODELS_DIR", str(runs / "first" / "model"))   # one model folder
    assert f"note: CODEC_MODELS_DIR={runs / 'first' / 'model'} is a model folder itself; it takes the folder " \
           f"that holds model folders (here {runs / 'first'}), and --model takes this one" in \
           " ".join(invoke("models", "--json").output.split())


def test_an_empty_models_folder_variable_counts_as_unset(tmp_path, monkeypatch):
    from codec.models.loading import models_dir, shipped_models_dir

    monkeypatch.chdir(tmp_path)   # not taken for the models folder
    monkeypatch.setenv("CODEC_MODELS_DIR", "")
    assert models_dir() == shipped_models_dir()


def test_models_piped_to_a_reader_that_leaves_exits_141(monkeypatch):
    from rich.console import Console

    def reader_gone(self, *args, **kwargs):   # as a write to `| true`'s closed pipe goes
        self.on_broken_pipe()

    monkeypatch.setattr(Console, "print", reader_gone)
    assert invoke("models").exit_code == 141


def test_an_empty_model_name_is_refused_not_taken_for_the_default(tiny_model_dir, tmp_path):
    from tests.conftest import tone, write_audio

    source = write_audio(tmp_path / "in.wav", tone(0.2, 16000), 16000)
    for name in ("", " "):
        result = invoke("encode", source, tmp_path / "x.codes", "--model", name)
        assert result.exit_code == 1 and f"the model name {name!r} is empty" in result.output
    assert not (tmp_path / "x.codes").exists()
    codes = tmp_path / "made.codes"
    assert invoke("encode", source, codes, "--model", tiny_model_dir).exit_code == 0
    for target in (tmp_path / "x.wav", tmp_path / "batch"):   # one file, and a batch
        sources = [codes] if target.suffix else [codes, codes.with_name("b.codes")]
        if not target.suffix:
            codes.with_name("b.codes").write_bytes(codes.read_bytes())
        result = invoke("decode", *sources, target, "--model", "")
        assert result.exit_code == 1 and "the model name '' is empty" in result.output
        assert not target.exists()
