"""Reconstruction losses: multi-resolution log-mel L1 (DAC), multi-resolution STFT magnitude
(spectral convergence + log-magnitude L1, Parallel WaveGAN, Yamamoto et al. 2020), and a
phase-aware power-law compressed complex STFT loss (Braun & Tashev, "A consolidated view of loss
functions for supervised deep learning-based speech enhancement", 2021), and a loss on the
phase's derivatives, group delay and instantaneous frequency (APNet, Ai & Ling 2023)."""

import warnings

import librosa
import torch
from torch import nn

_EPS = 1e-5


def _spectrum(x: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """``[B, 1, T] -> [B, n_fft // 2 + 1, frames]`` complex STFT, hop ``n_fft // 4``."""
    return torch.stft(x.squeeze(1), n_fft, n_fft // 4, window=window, return_complex=True)


def _magnitude_of(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|`` with a finite gradient at zero."""
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)


def _magnitude(x: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """``[B, 1, T] -> [B, n_fft // 2 + 1, frames]`` magnitude with a finite gradient at zero."""
    return _magnitude_of(_spectrum(x, n_fft, window))


class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of ``|log10 mel(y_hat) - log10 mel(y)|`` (librosa filter banks)."""

    def __init__(self, sample_rate: int, window_lengths: list[int], n_mels: list[int]):
        """Raises ValueError if a window's frequency resolution leaves some of its mel bands empty."""
        super().__init__()
        self.window_lengths = list(window_lengths)
        for n_fft, mels in zip(window_lengths, n_mels, strict=True):
            with warnings.catch_warnings():   # librosa's several-line warning: the error below says it
                warnings.simplefilter("ignore", UserWarning)
                bank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=mels, fmin=0.0,
                                           fmax=sample_rate / 2)
            if empty := int((bank.max(axis=1) == 0).sum()):
                raise ValueError(f"{empty} of the {mels} mel bands of the {n_fft}-sample window hold no "
                                 f"frequency bin; give that window fewer bands")
            self.register_buffer(f"mel_{n_fft}", torch.from_numpy(bank).float(), persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft in self.window_lengths:
            bank, window = getattr(self, f"mel_{n_fft}"), getattr(self, f"window_{n_fft}")
            mel_hat = bank @ _magnitude(y_hat, n_fft, window)
            mel = bank @ _magnitude(y, n_fft, window)
            total = total + (torch.log10(mel_hat.clamp(min=_EPS)) - torch.log10(mel.clamp(min=_EPS))).abs().mean()
        return total / len(self.window_lengths)


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence plus log-magnitude L1."""

    def __init__(self, window_lengths: list[int]):
        super().__init__()
        self.window_lengths = list(window_lengths)
        for n_fft in window_lengths:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft in self.window_lengths:
            window = getattr(self, f"window_{n_fft}")
            mag_hat, mag = _magnitude(y_hat, n_fft, window), _magnitude(y, n_fft, window)
            convergence = torch.linalg.norm(mag - mag_hat) / torch.linalg.norm(mag).clamp(min=_EPS)
            log_l1 = (torch.log(mag_hat.clamp(min=_EPS)) - torch.log(mag.clamp(min=_EPS))).abs().mean()
            total = total + convergence + log_l1
        return total / len(self.window_lengths)


class CompressedComplexSTFTLoss(nn.Module):
    """Mean over resolutions of ``share * |c(Y_hat) - c(Y)|^2 + (1 - share) * (|Y_hat|^p - |Y|^p)^2``
    with ``c(Y) = |Y|^p e^{j angle(Y)}`` (Braun & Tashev 2021; p = 0.3, share = 0.3 there).

    The magnitude losses leave the phase free; this one also asks for the input's phase. The
    compression keeps quiet bins from being ignored. In a codec it costs magnitude accuracy where
    the codes cannot carry the phase: recipes/esc_16k_small_phase.yaml lost PESQ-WB with it.
    """

    def __init__(self, window_lengths: list[int], power: float = 0.3, complex_share: float = 0.3):
        super().__init__()
        self.window_lengths, self.power, self.complex_share = list(window_lengths), power, complex_share
        for n_fft in window_lengths:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _compressed(self, x: torch.Tensor, n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 1, T]`` -> compressed complex spectrum and its magnitude, ``[B, n_fft // 2 + 1, frames]``."""
        spec = _spectrum(x, n_fft, getattr(self, f"window_{n_fft}"))
        magnitude = _magnitude_of(spec)
        compressed = magnitude.pow(self.power)
        return spec * (compressed / magnitude), compressed

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft in self.window_lengths:
            spec_hat, mag_hat = self._compressed(y_hat, n_fft)
            spec, mag = self._compressed(y, n_fft)
            difference = spec_hat - spec
            complex_error = (difference.real.pow(2) + difference.imag.pow(2)).mean()
            magnitude_error = (mag_hat - mag).pow(2).mean()
            total = total + self.complex_share * complex_error + (1 - self.complex_share) * magnitude_error
        return total / len(self.window_lengths)


def _unit(spec: torch.Tensor) -> torch.Tensor:
    """``spec / |spec|``, the phase as a unit phasor, ``[B, bins, frames]``. A floor 100 dB below
    each item's loudest bin keeps the gradient bounded at zero magnitude; only bins near or below
    it shrink, so the distance is not biased towards a louder or quieter output."""
    power = spec.real.pow(2) + spec.imag.pow(2)
    floor = (_PHASOR_FLOOR * power.detach().amax(dim=(1, 2), keepdim=True).sqrt()).clamp(min=1e-8)
    return spec / torch.sqrt(power + floor.pow(2))


_PHASOR_FLOOR = 1e-5
PHASE_TERMS = ("phase", "group_delay", "frequency")


def check_phase_terms(terms: list[str]) -> None:
    """Raises ValueError unless ``terms`` names one or more of PHASE_TERMS, each once."""
    if not terms or len(set(terms)) < len(terms) or any(term not in PHASE_TERMS for term in terms):
        raise ValueError(f"phase loss terms {list(terms)}: choose one or more of {', '.join(PHASE_TERMS)}, each once")


class PhaseDerivativeLoss(nn.Module):
    """Mean over resolutions of magnitude-weighted phase distances between ``y_hat`` and ``y``.

    Terms, as in APNet (Ai & Ling, "APNet: An all-frame-level neural vocoder incorporating direct
    prediction of amplitude and phase spectra", IEEE/ACM TASLP 2023): ``phase`` (the instantaneous
    phase), ``group_delay`` (its difference between neighbouring bins) and ``frequency`` (the
    instantaneous frequency: its difference between neighbouring frames). APNet takes the absolute
    value of the wrapped difference ("anti-wrapping"); this loss takes ``1 - cos(difference)``
    instead, a smooth distance on the same circle, computed on unit phasors so that no angle is
    unwrapped. APNet averages over all bins; here a bin weighs ``|Y|^power`` (a pair of bins, the
    geometric mean), so the random phase of near-silent bins counts little, and each item weighs
    the same. STFTs use a Hann window of each length, hop a quarter of it.

    Why: the relative phase terms say what a listener hears (harmonics' exact frequencies, onsets)
    without asking the decoder for the input's absolute phase, which codes at a few kbps do not
    carry (recipes/esc_16k_small_phase.yaml). ``y_hat``, ``y``: ``[B, 1, T]`` with ``T`` above
    half the longest window; returns the sum over ``terms`` of each term's distance, 0 (the
    target's phase) to 2 (turned by pi); a random phase scores 1.

    Raises:
        ValueError: for an unknown or repeated term, or no terms.
    """

    def __init__(self, window_lengths: list[int], terms: list[str], power: float = 1.0):
        super().__init__()
        check_phase_terms(terms)
        self.window_lengths, self.terms, self.power = list(window_lengths), list(terms), power
        for n_fft in window_lengths:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _distance(self, unit_hat: torch.Tensor, unit: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-item weighted mean of ``1 - cos(angle(unit_hat) - angle(unit))``, averaged over items."""
        cosine = (unit_hat * unit.conj()).real
        per_item = ((1 - cosine) * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=_EPS)
        return per_item.mean()

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft in self.window_lengths:
            window = getattr(self, f"window_{n_fft}")
            spec = _spectrum(y, n_fft, window)
            u_hat, u = _unit(_spectrum(y_hat, n_fft, window)), _unit(spec)
            weight = _magnitude_of(spec).pow(self.power)
            if "phase" in self.terms:
                total = total + self._distance(u_hat, u, weight)
            if "group_delay" in self.terms:  # along frequency: bins are dim 1
                total = total + self._distance(u_hat[:, 1:] * u_hat[:, :-1].conj(), u[:, 1:] * u[:, :-1].conj(),
                                               (weight[:, 1:] * weight[:, :-1]).sqrt())
            if "frequency" in self.terms:  # along time: frames are dim 2
                total = total + self._distance(u_hat[:, :, 1:] * u_hat[:, :, :-1].conj(),
                                               u[:, :, 1:] * u[:, :, :-1].conj(),
                                               (weight[:, :, 1:] * weight[:, :, :-1]).sqrt())
        return total / len(self.window_lengths)
