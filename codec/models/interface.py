"""What every codec family shares: rates, codebooks and bitrates, derived from its config."""

import math
import numbers

import torch

from codec.modules import StreamingModule


def _described(value) -> str:
    """A value's kind for an error: a tensor's dtype, else its type."""
    return f"a {value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__


def check_integer_tensor(value, name: str, shape: str) -> None:
    """Raises TypeError naming ``name`` and its ``shape`` unless ``value`` is an integer torch tensor."""
    if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.is_complex() \
            or value.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer torch tensor {shape}, not {_described(value)}")


def range_problem(codes: torch.Tensor, size: int, what: str = "codes", held_by: str = "codebooks") -> str | None:
    """Why integer ``codes`` are not all in ``[0, size)``, naming them ``what`` (held by the model's
    ``held_by``), or None."""
    # (compared as Python ints: in the tensor's own dtype, uint8 codes would compare with 1024 wrapped to 0)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= size):
        return (f"{what} range from {int(codes.min())} to {int(codes.max())}; this model's {held_by} hold codes 0 "
                f"to {size - 1}")
    return None


class CodecBase(StreamingModule):
    """Base of the codec families. A subclass sets ``self.config`` (with ``sample_rate``,
    ``codebook_size`` and ``bitrates_kbps``) and defines ``frame_size``, ``num_codebooks``,
    ``latency`` and the encode/decode methods."""

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.frame_size

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def bitrate_kbps(self, num_codebooks: int) -> float:
        """Nominal bitrate of ``num_codebooks`` codebooks, in kbps."""
        return num_codebooks * math.log2(self.codebook_size) * self.frame_rate / 1000

    def default_bitrate(self) -> float:
        """The bitrate used when none is asked for, in kbps: 6 if the model offers it, else the one
        of ``config.bitrates_kbps`` nearest to 6 (the higher of two as near)."""
        return min(self.config.bitrates_kbps, key=lambda kbps: (abs(kbps - 6.0), -kbps))

    def codebooks_for_bitrate(self, kbps: float) -> int:
        """Number of codebooks giving ``kbps``.

        Raises:
            ValueError: if the bitrate is not one of ``config.bitrates_kbps``.
        """
        supported = self.config.bitrates_kbps
        if not any(math.isclose(kbps, b) for b in supported):
            listed = ", ".join(f"{b:g}" for b in supported)
            raise ValueError(f"bitrate {kbps:.15g} kbps is not supported by {self.config.name}; "
                             f"choose one of {listed}")
        return round(kbps * 1000 / (math.log2(self.codebook_size) * self.frame_rate))

    def bitrate_problem(self) -> str | None:
        """Why ``config.bitrates_kbps`` cannot all be served (None if they can): each bitrate must
        be a whole number of codebooks, from 1 to ``num_codebooks``, each listed once, lowest first."""
        if not self.config.bitrates_kbps:
            return "lists no bitrate"
        listed = self.config.bitrates_kbps
        if any(high < low or math.isclose(low, high) for low, high in zip(listed, listed[1:], strict=False)):
            distinct = sorted({round(kbps, 9) for kbps in listed})
            return f"list each bitrate once, lowest first: [{', '.join(f'{kbps:g}' for kbps in distinct)}]"
        per_codebook = self.bitrate_kbps(1)
        for kbps in self.config.bitrates_kbps:
            count = kbps / per_codebook
            if not math.isclose(count, round(count), abs_tol=1e-6):
                return (f"{kbps:g} kbps is not a whole number of codebooks (each codebook adds "
                        f"{per_codebook:g} kbps)")
            if not 1 <= round(count) <= self.num_codebooks:
                top = self.bitrate_kbps(self.num_codebooks)
                return (f"{kbps:g} kbps needs {round(count)} codebooks; this model has 1 to {self.num_codebooks} "
                        f"(each adds {per_codebook:g} kbps: {per_codebook:g} to {top:g} kbps)")
        return None

    def check_codebook_count(self, num_codebooks: int) -> None:
        """Refuse a codebook count the model does not have (slicing would quietly use fewer).

        Raises:
            TypeError: unless ``num_codebooks`` is an integer.
            ValueError: unless ``1 <= num_codebooks <= self.num_codebooks``.
        """
        if not isinstance(num_codebooks, numbers.Integral) or isinstance(num_codebooks, bool):
            raise TypeError(f"num_codebooks must be a whole number, not {num_codebooks!r} "
                            f"({type(num_codebooks).__name__})")
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise ValueError(f"num_codebooks {num_codebooks}: this model has 1 to {self.num_codebooks} codebooks")

    def check_waveform(self, wav) -> None:
        """Refuse what the tensor-level ``encode`` cannot code as given (torch would fail deep
        inside, or a conv stage name a stride instead of the frame size).

        Raises:
            TypeError: unless ``wav`` is a float32 torch tensor.
            ValueError: unless it is ``[B, 1, T]`` with ``T`` a positive multiple of ``frame_size``.
        """
        if not isinstance(wav, torch.Tensor) or wav.dtype != torch.float32:
            raise TypeError(f"wav must be a float32 torch tensor [B, 1, T], not {_described(wav)} "
                            f"(codec.load_model(...).encode takes numpy arrays and other types)")
        if wav.dim() != 3 or wav.shape[1] != 1 or wav.shape[2] == 0 or wav.shape[2] % self.frame_size:
            raise ValueError(f"wav has shape {tuple(wav.shape)}: encode takes [B, 1, T] with T a positive multiple "
                             f"of frame_size ({self.frame_size} samples; codec.load_model(...).encode pads)")

    def check_codes(self, codes) -> None:
        """Refuse codes the tensor-level ``decode`` cannot read (an embedding lookup would fail deep
        inside, or codebooks beyond the model's be ignored).

        Raises:
            TypeError: unless ``codes`` is an integer torch tensor.
            ValueError: unless it is ``[B, K, F]`` with ``1 <= K <= num_codebooks``, ``F >= 1`` and
                every code in ``[0, codebook_size)``.
        """
        check_integer_tensor(codes, "codes", "[B, K, F]")
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.num_codebooks or codes.shape[2] == 0:
            raise ValueError(f"codes have shape {tuple(codes.shape)}: decode takes [B, K, F] with K from 1 to "
                             f"{self.num_codebooks} codebooks and F >= 1 frames")
        if problem := self.code_range_problem(codes):
            raise ValueError(problem)

    def code_range_problem(self, codes: torch.Tensor) -> str | None:
        """Why integer ``codes`` are not this model's (a code outside ``[0, codebook_size)``), or None."""
        return range_problem(codes, self.codebook_size)

    # the config fields that decide a codebook's kbps and the codebook count (set by each family),
    # named in an error about bitrates the model cannot serve
    rate_keys: tuple[str, ...] = ("sample_rate", "codebook_size")

    # state-dict key prefixes and config fields that only decoding uses (set by each family)
    decoder_only_weights: tuple[str, ...] = ()
    decoder_only_config: tuple[str, ...] = ()

    def code_identity(self) -> tuple[dict, dict]:
        """What decides the codes this model writes: ``(config, state dict)`` without the
        decoder-only fields and weights. Two models with equal identities write the same codes."""
        config = {k: v for k, v in self.config.to_dict().items() if k not in self.decoder_only_config}
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(self.decoder_only_weights)}
        return config, state

    def decoder_condition(self, global_codes):
        """What ``decode_latent`` takes besides the latent, derived from a stream's global code;
        None for families whose decoder takes nothing else (the conv codec's FiLM overrides it)."""
        return None
