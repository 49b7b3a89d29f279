"""The conv codec: a causal frame-domain encoder/decoder around a residual VQ.

    wav [B, 1, T] -> causal STFT [B, bins, N] -> ConvNeXt blocks at the analysis rate
      -> strided causal conv to the code rate -> ConvNeXt blocks -> latent [B, D, F]
      -> residual VQ -> codes [B, K, F]
      -> ConvNeXt blocks at the code rate -> upsample to the analysis rate -> ConvNeXt blocks
      -> inverse-STFT head (Vocos) -> wav [B, 1, T]

Frame-domain processing with an inverse-STFT head learns far faster per CPU-minute than a
waveform-domain SEANet stack (DESIGN.md, "What we know about training on this hardware").
Every layer is causal; the only look-ahead is the inverse STFT's overlap-add
(``synthesis_n_fft - hop`` samples), which with one code frame gives the algorithmic ``latency``:
320 + 160 samples = 30 ms for conv-16k. The encoder's longer analysis window looks only
into the past, so it costs no latency.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from codec.config import JsonConfig
from codec.highpass import check_highpass
from codec.level import check_target_level
from codec.models.interface import CodecBase, check_integer_tensor, range_problem
from codec.modules import (
    CausalConv1d,
    CausalSTFT,
    ChannelLayerNorm,
    ConvNeXtBlock,
    FrameUpsample,
    ISTFTHead,
)
from codec.modules.stft import check_synthesis_window
from codec.quantization import GlobalCode, QuantizedResult, ResidualVectorQuantizer


@dataclass
class ConvCodecConfig(JsonConfig):
    """Hyper-parameters of a conv codec; stored as ``config.json`` beside the weights."""

    name: str = "conv-16k"
    sample_rate: int = 16000
    analysis_n_fft: int = 640        # encoder STFT window, samples (causal: past context only)
    synthesis_n_fft: int = 320       # decoder inverse-STFT window; n_fft - hop is look-ahead
    hop_length: int = 160            # STFT hop of both, samples (100 frames/s at 16 kHz)
    downsample: int = 2              # analysis frames per code frame
    analysis_dim: int = 192          # channels at the analysis rate
    code_rate_dim: int = 384         # channels at the code rate
    latent_dim: int = 256
    encoder_analysis_blocks: int = 2
    encoder_code_rate_blocks: int = 3
    decoder_code_rate_blocks: int = 6
    decoder_analysis_blocks: int = 3
    kernel_size: int = 7
    num_codebooks: int = 24
    codebook_size: int = 1024
    codebook_dim: int = 8
    masked_quantizers: int = 0       # MCRVQ: the first N quantizers each see 1/N of the latent channels
    global_groups: int = 0           # TiCodec time-invariant code: G group codebooks, 0 = none
    global_dim: int = 64
    global_codebook_size: int = 256
    global_seconds: float = 3.0      # the global code summarises the first seconds of a stream
    global_film: bool = False        # the global code also scales and shifts every decoder block (FiLM)
    bitrates_kbps: list[float] = field(default_factory=lambda: [1.5, 3.0, 6.0, 12.0])
    input_level_dbfs: float | None = None   # encoding scales input to this active level (codec/level.py)
    input_highpass_hz: float | None = None  # encoding high-passes input at this cutoff (codec/highpass.py)


@dataclass
class CodecOutput:
    audio: torch.Tensor              # [B, 1, T] reconstruction
    quantized: QuantizedResult
    consistency: torch.Tensor | None = None   # TiCodec's global-code consistency loss (scalar)


class ConvCodec(CodecBase):
    """Streaming-capable (causal) conv codec with one interface: ``encode``/``decode``.

    ``encode(wav [B, 1, T], num_codebooks) -> codes [B, K, F]`` and
    ``decode(codes [B, K, F]) -> wav [B, 1, F * frame_size]``, where ``T`` must be a multiple of
    ``frame_size`` (the file-level coder pads and trims). Inside ``streaming(batch_size)`` the
    same calls take consecutive chunks; see ``codec.streaming`` for sessions that also buffer
    partial frames and flush the decoder's last samples.
    """

    def __init__(self, config: ConvCodecConfig):
        super().__init__()
        self.config = c = config
        check_synthesis_window(c.synthesis_n_fft, c.hop_length, f"hop_length={c.hop_length}")
        check_target_level(c.input_level_dbfs)
        check_highpass(c.input_highpass_hz)
        bins = c.analysis_n_fft // 2 + 1
        k = c.kernel_size
        self.stft = CausalSTFT(c.analysis_n_fft, c.hop_length)
        self.encoder = nn.Sequential(
            nn.Conv1d(3 * bins, c.analysis_dim, 1),
            ChannelLayerNorm(c.analysis_dim, eps=1e-6),
            *[ConvNeXtBlock(c.analysis_dim, k) for _ in range(c.encoder_analysis_blocks)],
            CausalConv1d(c.analysis_dim, c.code_rate_dim, c.downsample, stride=c.downsample),
            ChannelLayerNorm(c.code_rate_dim, eps=1e-6),
            *[ConvNeXtBlock(c.code_rate_dim, k) for _ in range(c.encoder_code_rate_blocks)],
            ChannelLayerNorm(c.code_rate_dim, eps=1e-6),
            nn.Conv1d(c.code_rate_dim, c.latent_dim, 1),
        )
        self.quantizer = ResidualVectorQuantizer(c.latent_dim, c.num_codebooks, c.codebook_size,
                                                 c.codebook_dim, c.masked_quantizers)
        self.decoder = nn.Sequential(
            nn.Conv1d(c.latent_dim, c.code_rate_dim, 1),
            ChannelLayerNorm(c.code_rate_dim, eps=1e-6),
            *[ConvNeXtBlock(c.code_rate_dim, k) for _ in range(c.decoder_code_rate_blocks)],
            FrameUpsample(c.code_rate_dim, c.analysis_dim, c.downsample),
            ChannelLayerNorm(c.analysis_dim, eps=1e-6),
            *[ConvNeXtBlock(c.analysis_dim, k) for _ in range(c.decoder_analysis_blocks)],
            ChannelLayerNorm(c.analysis_dim, eps=1e-6),
        )
        self.head = ISTFTHead(c.analysis_dim, c.synthesis_n_fft, c.hop_length)
        self.global_code = GlobalCode(c.latent_dim, c.global_dim, c.global_groups, c.global_codebook_size,
                                      c.codebook_dim) if c.global_groups else None
        # FiLM (Perez et al. 2018) of each decoder block's output by the global code, as TiCodec
        # feeds its time-invariant code to the decoder; zero-initialised, so it starts as identity
        self._film_channels = [block.gamma.numel() for block in self.decoder if isinstance(block, ConvNeXtBlock)]
        self.global_film = nn.Linear(c.global_dim, 2 * sum(self._film_channels)) \
            if c.global_groups and c.global_film else None
        if self.global_film is not None:
            nn.init.zeros_(self.global_film.weight)
            nn.init.zeros_(self.global_film.bias)

    # --- the codec interface (rates and bitrates: CodecBase) -----------------------------
    rate_keys = ("sample_rate", "hop_length", "downsample", "codebook_size", "num_codebooks")

    @property
    def frame_size(self) -> int:
        """Samples per code frame."""
        return self.config.hop_length * self.config.downsample

    @property
    def num_codebooks(self) -> int:
        """Largest number of codebooks the model has."""
        return self.config.num_codebooks

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: one code frame plus the inverse STFT's overlap."""
        return self.frame_size + self.config.synthesis_n_fft - self.config.hop_length

    @property
    def latent_channels(self) -> int:
        """Channels of the quantized latent that ``decode_latent`` takes."""
        return self.config.latent_dim

    def encoder_parts(self) -> list[nn.Module]:
        """The modules an encoder session streams (their state is the session's)."""
        return [self.stft, self.encoder]

    decoder_only_weights = ("decoder.", "head.", "global_film.")
    decoder_only_config = ("decoder_code_rate_blocks", "decoder_analysis_blocks", "global_film")

    def decoder_parts(self) -> list[nn.Module]:
        """The modules a decoder session streams."""
        return [self.decoder, self.head]

    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T] -> [B, D, F]`` continuous latent before quantization."""
        real, imag = self.stft(wav).chunk(2, dim=1)
        magnitude = torch.sqrt(real.pow(2) + imag.pow(2))
        scale = magnitude.pow(0.3) / (magnitude + 1e-5)   # compressed spectrum: |X|^0.3 with X's phase
        features = torch.cat([torch.log(magnitude + 1e-5), real * scale, imag * scale], dim=1)
        return self.encoder(features)

    def decode_latent(self, latent: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, D, F] -> [B, 1, F * frame_size]`` waveform; ``condition [B, 2 * sum(C)]`` (from
        ``decoder_condition``) scales and shifts each decoder block's ``C`` channels."""
        if condition is None:
            return self.head(self.decoder(latent))
        films = iter(condition.split([2 * c for c in self._film_channels], dim=1))
        x = latent
        for layer in self.decoder:
            x = layer(x)
            if isinstance(layer, ConvNeXtBlock):
                scale, shift = next(films)[:, :, None].chunk(2, dim=1)
                x = x * (1 + scale) + shift
        return self.head(x)

    # --- time-invariant (global) codes: models with config.global_groups > 0 ------------------
    @property
    def global_frames(self) -> int:
        """Code frames the global code summarises (the first ``global_seconds`` of a stream)."""
        return max(1, round(self.config.global_seconds * self.frame_rate))

    @torch.no_grad()
    def encode_global(self, latent: torch.Tensor) -> torch.Tensor | None:
        """``latent [B, D, F]`` -> global codes ``[B, G]`` from its first ``global_frames``
        frames; None for a model without a global code."""
        return None if self.global_code is None else self.global_code.encode(latent[..., :self.global_frames])

    def _checked_global_codes(self, global_codes, batch: int | None = None) -> torch.Tensor:
        """``global_codes [B, G]`` as int64 (``B`` = ``batch`` where given).

        Raises:
            TypeError: unless they are an integer torch tensor.
            ValueError: for None, another shape, or a code outside ``[0, global_codebook_size)``.
        """
        groups, size = self.config.global_groups, self.config.global_codebook_size
        shape = f"[{'B' if batch is None else batch}, {groups}]"
        if global_codes is None:
            raise ValueError(f"{self.config.name} needs global codes {shape}: encode_global(encode_latent(wav)) "
                             f"gives them, for decode(codes, global_codes)")
        check_integer_tensor(global_codes, "global_codes", shape)
        if global_codes.dim() != 2 or global_codes.shape[1] != groups or batch not in (None, global_codes.shape[0]):
            raise ValueError(f"global_codes have shape {tuple(global_codes.shape)}: {self.config.name} needs "
                             f"global codes {shape}")
        if problem := range_problem(global_codes, size, "global codes", "global codebooks"):
            raise ValueError(problem)
        return global_codes.long()

    def _global_embedding(self, global_codes: torch.Tensor | None, batch: int) -> torch.Tensor | int:
        if self.global_code is None:
            return 0
        return self.global_code.embedding(self._checked_global_codes(global_codes, batch))

    @torch.no_grad()
    def decoder_condition(self, global_codes: torch.Tensor | None) -> torch.Tensor | None:
        """``global_codes [B, G]`` -> the decoder's FiLM condition ``[B, 2 * sum(C)]``; None for a
        model without one (``config.global_film``) or without codes."""
        if self.global_film is None or global_codes is None:
            return None
        return self.global_film(self.global_code.entries(self._checked_global_codes(global_codes)))

    @torch.no_grad()
    def quantize_latent(self, latent: torch.Tensor, num_codebooks: int,
                        global_codes: torch.Tensor | None = None) -> torch.Tensor:
        """``latent [B, D, F]`` -> ``codes [B, K, F]``: what the global code leaves, residual-quantized.
        Raises ValueError for a ``num_codebooks`` the model does not have."""
        self.check_codebook_count(num_codebooks)
        return self.quantizer.encode(latent - self._global_embedding(global_codes, latent.shape[0]), num_codebooks)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int, global_codes: torch.Tensor | None = None) -> torch.Tensor:
        """``wav [B, 1, T]`` (T a multiple of ``frame_size``) -> ``codes [B, K, F]`` int64.

        A model with a global code uses ``global_codes [B, G]`` (from ``encode_global``), or
        computes them from this signal's start.

        Raises:
            TypeError, ValueError: as ``check_waveform`` and ``check_codebook_count``, and for
                ``global_codes`` given that are not ``[B, G]`` integer codes of the model.
        """
        self.check_waveform(wav)
        latent = self.encode_latent(wav)
        if global_codes is None:
            global_codes = self.encode_global(latent)
        return self.quantize_latent(latent, num_codebooks, global_codes)

    def dequantize(self, codes: torch.Tensor, global_codes: torch.Tensor | None = None,
                   codebook_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``codes [B, K, F]`` (and ``global_codes [B, G]`` if the model has them) -> latent ``[B, D, F]``;
        ``codebook_mask [K]`` (1 used, 0 ignored) as in ``ResidualVectorQuantizer.decode``.

        Raises:
            TypeError, ValueError: if a model with a global code gets none, or not ``[B, G]``
                integer codes in ``[0, global_codebook_size)``.
        """
        return self.quantizer.decode(codes, codebook_mask) + self._global_embedding(global_codes, codes.shape[0])

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, global_codes: torch.Tensor | None = None) -> torch.Tensor:
        """``codes [B, K, F]`` -> ``wav [B, 1, F * frame_size]``.

        Raises:
            TypeError, ValueError: as ``check_codes``, and as ``dequantize`` for ``global_codes``.
        """
        self.check_codes(codes)
        return self.decode_latent(self.dequantize(codes, global_codes), self.decoder_condition(global_codes))

    def forward(self, wav: torch.Tensor, num_codebooks: torch.Tensor) -> CodecOutput:
        """Training pass: ``wav [B, 1, T]``, ``num_codebooks [B]`` int (quantizer dropout)."""
        return self.forward_latent(self.encode_latent(wav), num_codebooks)

    def forward_latent(self, latent: torch.Tensor, num_codebooks: torch.Tensor) -> CodecOutput:
        """``forward`` from the encoder's latent ``[B, D, F]`` (as ``encode_latent`` gives): the
        quantizer with a straight-through gradient, then the decoder."""
        if self.global_code is None:
            quantized = self.quantizer(latent, num_codebooks)
            return CodecOutput(self.decode_latent(quantized.quantized), quantized)
        embedding, entries, _, commitment, codebook, consistency = self.global_code(latent)
        quantized = self.quantizer(latent - embedding, num_codebooks)
        quantized.commitment_loss = quantized.commitment_loss + commitment
        quantized.codebook_loss = quantized.codebook_loss + codebook
        condition = None if self.global_film is None else self.global_film(entries)
        return CodecOutput(self.decode_latent(quantized.quantized + embedding, condition), quantized, consistency)
