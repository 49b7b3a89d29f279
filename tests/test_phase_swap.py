"""scripts/phase_swap.py: the decoded and the input STFT magnitude and phase, swapped."""

import sys

import numpy as np
import pytest
import torch

from codec.models import EscCodec
from tests.conftest import REPO
from tests.test_esc import TINY

sys.path.insert(0, str(REPO / "scripts"))
from phase_swap import swapped_signals  # noqa: E402


def test_swapped_signals_decode_as_the_codec_and_resynthesize_the_input():
    torch.manual_seed(0)
    model = EscCodec(TINY).eval()
    audio = np.random.default_rng(0).standard_normal(20 * model.frame_size + 7) * 0.1
    signals = swapped_signals(model, audio, TINY.bitrates_kbps[-1])
    frames = len(audio) // model.frame_size
    with torch.no_grad():
        wav = torch.from_numpy(audio[:frames * model.frame_size]).float()[None, None]
        decoded = model.decode(model.encode(wav, model.codebooks_for_bitrate(TINY.bitrates_kbps[-1])))[0, 0]
    assert all(len(s) == frames * model.frame_size for s in signals.values())
    np.testing.assert_allclose(signals["decoded"], decoded.numpy(), atol=1e-5)
    # the inverse STFT of the input's own STFT gives the input back, but for the causal window's ramp
    # at the start and the partial window sum at the end
    middle = slice(model.head.istft.overlap, -model.head.istft.overlap)
    np.testing.assert_allclose(signals["input resynthesized"][middle], audio[:len(decoded)][middle], atol=1e-4)
    assert not np.allclose(signals["input magnitude, decoded phase"], signals["input resynthesized"], atol=1e-3)


def test_an_unknown_model_is_one_line_without_the_cli_option_hint():
    from dev_speech import load_models

    with pytest.raises(SystemExit) as exit_info:
        load_models(["no-such-model"], 6.0)
    message = str(exit_info.value)
    assert message.startswith("error: model 'no-such-model' not found") and "--model" not in message
