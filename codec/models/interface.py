"""What every codec family shares: rates, codebooks and bitrates, derived from its config."""

import math

from codec.modules import StreamingModule


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
        be a whole number of codebooks, from 1 to ``num_codebooks``."""
        if not self.config.bitrates_kbps:
            return "lists no bitrate"
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
            ValueError: unless ``1 <= num_codebooks <= self.num_codebooks``.
        """
        if not 1 <= num_codebooks <= self.num_codebooks:
            raise ValueError(f"num_codebooks {num_codebooks}: this model has 1 to {self.num_codebooks} codebooks")

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
