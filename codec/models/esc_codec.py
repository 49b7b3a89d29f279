"""The ESC codec: sub-band transformers with cross-scale residual VQ, causal along time
("ESC: Efficient Speech Coding with Cross-Scale Residual Vector Quantized Transformers",
Gu et al. 2024), in a streaming form.

    wav [B, 1, T] -> causal STFT (n_fft, hop = frame_size) -> per frame, S sub-band tokens
    encoder: stage 1 (S tokens x dims[0]) -> merge pairs -> stage 2 (S/2 x dims[1]) -> ... -> e_1..e_n
    cross-scale RVQ, coarse to fine (decoder stage n first):
        q_n = RVQ_n(e_n);                     x_n = dec_n(q_n)           -> split -> p_(n-1)
        q_s = RVQ_s(e_s - p_s);               x_s = dec_s(p_s + q_s)     -> split -> p_(s-1)
    decoder stage 1 output -> Vocos inverse-STFT head -> wav

Every scale's tokens of one frame, flattened, are one vector of ``S_s x dims[s]`` channels
(``S_s = subbands / 2^s`` tokens), quantized by a residual VQ of ``codebooks_per_scale[s]``
factorized codebooks (shapes per scale for the defaults: 16 x 64, 8 x 96, 4 x 128). The
codes of a frame list the coarsest scale's codebooks first, so the first K codebooks are a
coarser reconstruction: the bitrate grows by adding scales (stream dropout in training).

Attention along time is causal with a window; the encoder runs the decoder's coarser stages too
(the residuals need their predictions), with its own streaming state. Algorithmic latency: one
frame plus the output inverse STFT's overlap (``synthesis_n_fft - hop_length / synthesis_subframes``).
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from codec.config import JsonConfig
from codec.errors import CodecError
from codec.highpass import check_highpass
from codec.level import check_target_level
from codec.models.conv_codec import CodecOutput
from codec.models.interface import CodecBase
from codec.modules import CausalSTFT, ISTFTHead
from codec.modules.stft import check_synthesis_window
from codec.modules.transformer import SubbandTransformerBlock
from codec.quantization import QuantizedResult, ResidualVectorQuantizer


@dataclass
class EscCodecConfig(JsonConfig):
    """Hyper-parameters of an ESC codec; stored as ``config.json`` beside the weights."""

    architecture: str = "esc"
    name: str = "esc-16k"
    sample_rate: int = 16000
    n_fft: int = 640                 # analysis window, samples
    hop_length: int = 320            # one code frame per STFT frame (50 frames/s at 16 kHz)
    synthesis_n_fft: int = 640       # the output head's inverse-STFT window, samples
    synthesis_subframes: int = 1     # inverse-STFT frames per code frame (hop_length / this apart)
    subbands: int = 16               # tokens per frame at the finest scale
    dims: list[int] = field(default_factory=lambda: [64, 96, 128])    # channels per token, fine to coarse
    encoder_blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    decoder_blocks: list[int] = field(default_factory=lambda: [1, 1, 2])
    heads: int = 4
    window: int = 32                 # frames of attention along time (0.64 s)
    codebooks_per_scale: list[int] = field(default_factory=lambda: [6, 3, 3])  # fine to coarse
    codebook_size: int = 1024
    codebook_dim: int = 8
    bitrates_kbps: list[float] = field(default_factory=lambda: [1.5, 3.0, 6.0])
    global_groups: int = 0           # the sessions' interface: ESC has no global code
    input_level_dbfs: float | None = None   # encoding scales input to this active level (codec/level.py)
    input_highpass_hz: float | None = None  # encoding high-passes input at this cutoff (codec/highpass.py)


def _width(config: EscCodecConfig, scale: int) -> int:
    return (config.subbands >> scale) * config.dims[scale]


def _check_synthesis(c: EscCodecConfig) -> None:
    """Raises CodecError, naming the fields, unless the output head's frames tile the code frames."""
    if c.synthesis_subframes < 1 or c.hop_length % c.synthesis_subframes:
        raise CodecError(f"synthesis_subframes={c.synthesis_subframes} must be a positive divisor of "
                         f"hop_length={c.hop_length}")
    hop = c.hop_length // c.synthesis_subframes
    check_synthesis_window(c.synthesis_n_fft, hop, f"the synthesis hop (hop_length / synthesis_subframes = {hop})")


class ScaleQuantizers(nn.Module):
    """One residual VQ per scale, coarsest first in ``scales``; ``layers`` lists every codebook
    in code order (for training diagnostics and health checks)."""

    def __init__(self, config: EscCodecConfig):
        super().__init__()
        count = len(config.dims)
        self.scales = nn.ModuleList(
            ResidualVectorQuantizer(_width(config, s), config.codebooks_per_scale[s], config.codebook_size,
                                    config.codebook_dim) for s in reversed(range(count)))

    @property
    def layers(self) -> list[nn.Module]:
        return [layer for scale in self.scales for layer in scale.layers]

    def perplexities(self) -> list[float]:
        return [layer.perplexity() for layer in self.layers]


class EscCodec(CodecBase):
    """Streaming ESC codec with the conv codec's interface (``encode``/``decode``, sessions)."""

    def __init__(self, config: EscCodecConfig):
        super().__init__()
        self.config = c = config
        scales = len(c.dims)
        if c.n_fft // 2 % c.subbands or c.subbands % (1 << (scales - 1)):
            raise CodecError(f"subbands={c.subbands} must divide the {c.n_fft // 2} frequency bins and "
                             f"halve {scales - 1} times")
        if not (len(c.encoder_blocks) == len(c.decoder_blocks) == len(c.codebooks_per_scale) == scales):
            raise CodecError("dims, encoder_blocks, decoder_blocks and codebooks_per_scale need one entry per scale")
        _check_synthesis(c)
        check_target_level(c.input_level_dbfs)
        check_highpass(c.input_highpass_hz)
        self.bins_per_band = c.n_fft // 2 // c.subbands
        self.stft = CausalSTFT(c.n_fft, c.hop_length)
        self.embed = nn.Linear(3 * self.bins_per_band, c.dims[0])
        self.encoder = nn.ModuleList(
            nn.ModuleList(SubbandTransformerBlock(c.dims[s], c.heads, c.window, c.subbands >> s)
                          for _ in range(c.encoder_blocks[s])) for s in range(scales))
        self.merges = nn.ModuleList(nn.Linear(2 * c.dims[s], c.dims[s + 1]) for s in range(scales - 1))
        self.quantizer = ScaleQuantizers(c)
        self.decoder = nn.ModuleList(
            nn.ModuleList(SubbandTransformerBlock(c.dims[s], c.heads, c.window, c.subbands >> s)
                          for _ in range(c.decoder_blocks[s])) for s in range(scales))
        self.splits = nn.ModuleList(nn.Linear(c.dims[s + 1], 2 * c.dims[s]) for s in range(scales - 1))
        self.head = ISTFTHead(c.subbands * c.dims[0], c.synthesis_n_fft, c.hop_length, c.synthesis_subframes)
        self.global_code = None
        self.bypass_quantizer = False   # training only: set by the trainer during quantizer warm-up

    # --- the codec interface (rates and bitrates: CodecBase) --------------------------------
    rate_keys = ("sample_rate", "hop_length", "codebook_size", "codebooks_per_scale")

    @property
    def frame_size(self) -> int:
        return self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return sum(self.config.codebooks_per_scale)

    @property
    def latency(self) -> int:
        """One frame plus the inverse STFT's overlap, in samples."""
        return self.frame_size + self.head.istft.overlap

    @property
    def latent_channels(self) -> int:
        """Channels of the stacked quantized residuals that ``decode_latent`` takes."""
        return sum(_width(self.config, s) for s in range(len(self.config.dims)))

    def encoder_parts(self) -> list[nn.Module]:
        """What an encoder session streams: the encoder and the decoder's coarser stages."""
        return [self.stft, self.encoder, self.decoder[1:]]

    def decoder_parts(self) -> list[nn.Module]:
        return [self.decoder, self.head]

    # the encoder runs every decoder stage but the finest (its predictions make the residuals)
    decoder_only_weights = ("decoder.0.", "head.")
    decoder_only_config = ("synthesis_n_fft", "synthesis_subframes")

    def code_identity(self) -> tuple[dict, dict]:
        config, state = super().code_identity()
        config["decoder_blocks"] = config["decoder_blocks"][1:]
        return config, state

    # --- shapes ---------------------------------------------------------------------------
    def _tokens(self, flat: torch.Tensor, scale: int) -> torch.Tensor:
        """``[B, S_s * D_s, F] -> [B, F, S_s, D_s]``."""
        batch, _, frames = flat.shape
        return flat.transpose(1, 2).reshape(batch, frames, self.config.subbands >> scale, self.config.dims[scale])

    @staticmethod
    def _flat(tokens: torch.Tensor) -> torch.Tensor:
        """``[B, F, S, D] -> [B, S * D, F]``."""
        return tokens.flatten(2).transpose(1, 2)

    def _scale_slices(self) -> list[slice]:
        """Channel slices of each scale (coarsest first) in the stacked latent."""
        widths = [_width(self.config, s) for s in reversed(range(len(self.config.dims)))]
        starts = [sum(widths[:i]) for i in range(len(widths))]
        return [slice(start, start + width) for start, width in zip(starts, widths, strict=True)]

    def _codebook_slices(self) -> list[slice]:
        counts = list(reversed(self.config.codebooks_per_scale))
        starts = [sum(counts[:i]) for i in range(len(counts))]
        return [slice(start, start + count) for start, count in zip(starts, counts, strict=True)]

    # --- encoder and decoder stages -----------------------------------------------------------
    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, sum of widths, F]``: every scale's encoder features, coarsest first."""
        real, imag = self.stft(wav).chunk(2, dim=1)
        real, imag = real[:, :-1], imag[:, :-1]                     # drop the Nyquist bin: S equal bands
        magnitude = torch.sqrt(real.pow(2) + imag.pow(2))
        scale = magnitude.pow(0.3) / (magnitude + 1e-5)
        features = torch.stack([torch.log(magnitude + 1e-5), real * scale, imag * scale], dim=-1)  # [B, bins, F, 3]
        batch, _, frames, _ = features.shape
        bands = features.view(batch, self.config.subbands, self.bins_per_band, frames, 3)
        x = self.embed(bands.permute(0, 3, 1, 2, 4).reshape(batch, frames, self.config.subbands, -1))
        stages = []
        for s, blocks in enumerate(self.encoder):
            for block in blocks:
                x = block(x)
            stages.append(self._flat(x))
            if s < len(self.merges):
                x = self.merges[s](x.reshape(batch, frames, x.shape[2] // 2, -1))
        return torch.cat(stages[::-1], dim=1)

    def _decoder_stage(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """Decoder stage ``scale`` on tokens ``[B, F, S_s, D_s]``; returns the next finer scale's
        prediction ``[B, F, S_(s-1), D_(s-1)]`` (for scale 0, its output tokens)."""
        for block in self.decoder[scale]:
            x = block(x)
        if scale == 0:
            return x
        batch, frames, tokens, _ = x.shape
        return self.splits[scale - 1](x).reshape(batch, frames, 2 * tokens, -1)

    def _cross_scale(self, latent: torch.Tensor, quantize) -> torch.Tensor:
        """Coarse to fine: ``quantize(position, residual [B, W_s, F]) -> quantized [B, W_s, F]``
        (position 0 is the coarsest scale). Returns the finest decoder stage's input tokens."""
        slices = self._scale_slices()
        count = len(slices)
        prediction = None
        for position, channels in enumerate(slices):
            scale = count - 1 - position
            target = latent[:, channels]
            residual = target if prediction is None else target - self._flat(prediction)
            q = quantize(position, residual)
            x = self._tokens(q, scale) if prediction is None else prediction + self._tokens(q, scale)
            prediction = self._decoder_stage(scale, x) if scale > 0 else x
        return prediction

    @torch.no_grad()
    def quantize_latent(self, latent: torch.Tensor, num_codebooks: int, global_codes=None) -> torch.Tensor:
        """``[B, W, F]`` encoder features -> ``codes [B, K, F]``: each scale's residual after the
        decoder's prediction from the coarser scales' codes (stateful: run inside a session).
        Raises ValueError for a ``num_codebooks`` the model does not have."""
        self.check_codebook_count(num_codebooks)
        counts = self._counts(num_codebooks)
        codes = []

        def quantize(position, residual):
            scale_codes = self.quantizer.scales[position].encode(residual, counts[position]) if counts[position] \
                else residual.new_zeros(residual.shape[0], 0, residual.shape[-1], dtype=torch.long)
            codes.append(scale_codes)
            if not counts[position]:
                return torch.zeros_like(residual)
            return self.quantizer.scales[position].decode(scale_codes)

        self._cross_scale(latent, quantize)
        return torch.cat(codes, dim=1)

    def _counts(self, num_codebooks: int) -> list[int]:
        """Codebooks used at each scale (coarsest first) when the first ``num_codebooks`` are sent."""
        return [max(0, min(s.stop, num_codebooks) - s.start) for s in self._codebook_slices()]

    def dequantize(self, codes: torch.Tensor, global_codes=None, codebook_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """``codes [B, K, F]`` -> the stacked quantized residuals ``[B, W, F]`` (zeros where a scale
        has no codes); ``codebook_mask [K]`` (1 used, 0 ignored) weights each codebook."""
        batch, _, frames = codes.shape
        parts = []
        for position, codebooks in enumerate(self._codebook_slices()):
            scale = self.quantizer.scales[position]
            width = scale.layers[0].out_proj.out_features
            used = codes[:, codebooks]
            mask = None if codebook_mask is None else codebook_mask[codebooks]
            parts.append(scale.decode(used, mask) if used.shape[1]
                         else codes.new_zeros(batch, width, frames, dtype=torch.float))
        return torch.cat(parts, dim=1)

    def decoder_features(self, quantized: torch.Tensor) -> torch.Tensor:
        """Stacked quantized residuals ``[B, W, F]`` -> the output head's input ``[B, S * dims[0], F]``."""
        slices = self._scale_slices()
        finest = self._cross_scale(quantized, lambda position, residual: quantized[:, slices[position]])
        return self._flat(self._decoder_stage(0, finest))

    def decode_latent(self, quantized: torch.Tensor) -> torch.Tensor:
        """Stacked quantized residuals ``[B, W, F]`` -> ``wav [B, 1, F * frame_size]``."""
        return self.head(self.decoder_features(quantized))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int, global_codes=None) -> torch.Tensor:
        """``wav [B, 1, T]`` (T a multiple of ``frame_size``) -> ``codes [B, K, F]`` int64.

        Raises:
            TypeError, ValueError: as ``check_waveform`` and ``check_codebook_count``.
        """
        self.check_waveform(wav)
        return self.quantize_latent(self.encode_latent(wav), num_codebooks)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, global_codes=None) -> torch.Tensor:
        """``codes [B, K, F]`` -> ``wav [B, 1, F * frame_size]``.

        Raises:
            TypeError, ValueError: as ``check_codes``.
        """
        self.check_codes(codes)
        return self.decode_latent(self.dequantize(codes))

    def forward(self, wav: torch.Tensor, num_codebooks: torch.Tensor) -> CodecOutput:
        """Training pass with stream dropout: item ``b`` uses the first ``num_codebooks[b]`` codebooks."""
        return self.forward_latent(self.encode_latent(wav), num_codebooks)

    def forward_latent(self, latent: torch.Tensor, num_codebooks: torch.Tensor) -> CodecOutput:
        """``forward`` from the encoder's features ``[B, W, F]`` (as ``encode_latent`` gives): the
        quantizers with a straight-through gradient, then the decoder."""
        commitment, codebook, uncoded, codes = latent.new_zeros(()), latent.new_zeros(()), latent.new_zeros(()), []
        slices = self._codebook_slices()

        def quantize(position, residual):
            nonlocal commitment, codebook, uncoded
            if self.bypass_quantizer:  # pre-training without quantization (ESC): codebooks start from trained features
                codes.append(torch.zeros(residual.shape[0], slices[position].stop - slices[position].start,
                                         residual.shape[-1], dtype=torch.long, device=residual.device))
                return residual
            used = (num_codebooks - slices[position].start).clamp(0, slices[position].stop - slices[position].start)
            result = self.quantizer.scales[position](residual, used)
            commitment, codebook = commitment + result.commitment_loss, codebook + result.codebook_loss
            if result.latent_loss is not None:
                uncoded = uncoded + result.latent_loss
            codes.append(result.codes)
            return result.quantized

        finest = self._cross_scale(latent, quantize)
        uncoded = uncoded if self.training else None   # as the residual VQ: a training loss only
        result = QuantizedResult(None, torch.cat(codes, dim=1), commitment, codebook, uncoded)
        return CodecOutput(self.head(self._flat(self._decoder_stage(0, finest))), result)
