"""Decoding a saved packet stream (``codec stream --save``) to an audio file.

The stream's packets are read and checked first (they are small: codes, not audio), which
gives a plan: the frames to decode, the lost frames to conceal and where, and the exact length
from the end packet. The audio is then made block by block, as ``.codes`` files are decoded,
so memory does not grow with the stream's duration.

A lost packet's frame count is not in the stream; it is taken to be the sender's packet size,
the most frames any received packet holds (every packet but the last is that size), so that a
lost first packet of 10 frames keeps the timing of the rest. With a time-invariant global code
(TiCodec), the stream's first packet is the global code's, which holds no frames; a lost refresh
of it later in the stream cannot be told from a lost packet of frames, and shifts what follows
by one packet, and the packet before each refresh can be shorter, so its loss shifts what
follows by the difference (the end packet still gives the exact length).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec.bitstream import CodesMetadata
from codec.codes_files import read_stream_info
from codec.coding import (
    CodingReport,
    _check_not_empty_flac,
    _resampler,
    audio_format_for,
    block_seconds,
    check_compatible,
    check_output_format,
    check_paths,
    chosen_subtype,
    entropy_coder_for,
    write_decoded,
)
from codec.errors import CodecError
from codec.models import ConvCodec
from codec.packets import SEQUENCE_MODULO, Packet, StreamInfo, read_packets, sequence_gap, summarize_stream
from codec.streaming import file_decoder

# the longest run of lost packets a saved stream may conceal: longer gaps are damage, not loss
MAX_CONCEALED_SECONDS = 60
# and in all, at most that much plus this many times the audio received (a loss rate up to 97%, as
# in a long outage with a packet getting through now and then): gaps just under the limit, one
# after another, would make a 1 kB file hours of audio
MAX_LOST_PER_RECEIVED = 30


@dataclass
class _Plan:
    """What decoding a stream does, in order: ``("codes", [C, K, F] codes, first packet's
    sequence number)`` (consecutive packets' codes joined, up to ``block_seconds`` a step),
    ``("conceal", frames)`` or ``("global", [C, G] codes, sequence number)``; and what it found."""
    block_frames: int                # frames a "codes" step holds at most
    steps: list[tuple] = field(default_factory=list)
    frames: int = 0                  # frames decoded or concealed
    frame_packets: int = 0           # intact packets of codes received
    total: int | None = None         # samples at the stream's rate, from the end packet
    lost: int = 0                    # packets concealed
    stale: int = 0                   # duplicated or late packets dropped
    no_global: int = 0               # frames concealed while no global code had arrived
    lost_frames: int = 0             # frames concealed for lost packets
    _pending: list[np.ndarray] = field(default_factory=list)   # codes not yet joined into a step
    _pending_sequence: int = 0

    def codes(self, codes: np.ndarray, sequence: int) -> None:
        if self._pending and (codes.shape[1] != self._pending[0].shape[1]
                              or sum(c.shape[-1] for c in self._pending) >= self.block_frames):
            self._join()
        if not self._pending:
            self._pending_sequence = sequence
        self._pending.append(codes.astype(np.uint16))   # (codebooks hold at most 65536 codes): 2 bytes a code
        self.frames += codes.shape[-1]

    def conceal(self, frames: int) -> None:
        if frames > 0:
            self.other(("conceal", frames))
            self.frames += frames

    def other(self, step: tuple) -> None:
        self._join()
        self.steps.append(step)

    def finish(self) -> None:
        """Join the last codes into a step."""
        self._join()

    def _join(self) -> None:
        if self._pending:
            self.steps.append(("codes", np.concatenate(self._pending, axis=-1), self._pending_sequence))
            self._pending = []


def _plan(packets: Iterable[Packet], info: StreamInfo, packet_frames: int, needs_global: bool, block_frames: int,
          path: Path) -> _Plan:
    """The plan for ``packets`` (up to the end packet), as the module's docstring says, with
    ``packet_frames`` the sender's packet size.

    Raises:
        CodecError: naming ``path``, for a gap longer than MAX_CONCEALED_SECONDS, or lost packets
            adding up to more than MAX_CONCEALED_SECONDS plus MAX_LOST_PER_RECEIVED times the
            frames received.
    """
    plan, expected, started, has_global = _Plan(block_frames), 0, False, False
    for packet in packets:
        gap = sequence_gap(packet.sequence, expected)
        if gap >= SEQUENCE_MODULO // 2:   # behind the expected number: a duplicate or a late arrival
            plan.stale += 1
            continue
        if gap > 0:   # (before the end packet too: the damaged packets just before it)
            lost_frames = gap * packet_frames
            if needs_global and not started:   # the first lost one was the global code's, without frames
                lost_frames -= packet_frames
            if lost_frames > MAX_CONCEALED_SECONDS * info.frame_rate:
                raise CodecError(f"{path}: damaged: packet {packet.sequence} follows packet "
                                 f"{(expected - 1) % SEQUENCE_MODULO}, a gap of {gap} packets "
                                 f"(over {MAX_CONCEALED_SECONDS} s) that no stream's loss explains")
            plan.lost += gap
            plan.lost_frames += max(0, lost_frames)
            plan.conceal(lost_frames)
        started = True
        if packet.is_end:
            plan.total = packet.total_samples
            break
        expected = (packet.sequence + 1) % SEQUENCE_MODULO
        if packet.global_codes is not None:   # the time-invariant code for the frames from here on
            plan.other(("global", packet.global_codes, packet.sequence))
            has_global = True
            continue
        frames = packet.codes.shape[-1]
        plan.frame_packets += 1
        if needs_global and not has_global:   # its packet was lost
            plan.no_global += frames
            plan.conceal(frames)
            continue
        plan.codes(packet.codes, packet.sequence)
    plan.finish()
    received = plan.frames - plan.lost_frames
    if plan.lost_frames > MAX_CONCEALED_SECONDS * info.frame_rate + MAX_LOST_PER_RECEIVED * received:
        raise CodecError(f"{path}: damaged: its lost packets add up to {plan.lost_frames / info.frame_rate:.0f} s, "
                         f"against {received / info.frame_rate:.1f} s received: more than any stream's loss "
                         f"explains ({MAX_CONCEALED_SECONDS} s plus {MAX_LOST_PER_RECEIVED} times what arrived)")
    return plan


def _model_rate_blocks(model: ConvCodec, plan: _Plan, channels: int, path: Path) -> Iterator[torch.Tensor]:
    """The plan's audio at the model's rate, ``[C, 1, n]`` blocks of at most ``block_seconds`` each
    (the last is the decoder's flush)."""
    decoder = file_decoder(model, channels)
    for kind, *values in plan.steps:
        if kind == "codes":
            codes, sequence = values
            try:
                yield decoder.decode(torch.from_numpy(codes.astype(np.int64)))
            except CodecError as error:   # (a crafted packet's codebook count)
                raise CodecError(f"{path}: packet {sequence}: {error}") from None
        elif kind == "global":
            global_codes, sequence = values
            if global_codes.shape[1] != model.config.global_groups:   # (the header's model, other codebooks)
                raise CodecError(f"{path}: packet {sequence}: a global code of {global_codes.shape[1]} codebooks; "
                                 f"model '{model.config.name}' has {model.config.global_groups}")
            decoder.global_codes = torch.from_numpy(global_codes)
        elif kind == "conceal":
            for start in range(0, values[0], plan.block_frames):
                yield decoder.conceal(min(plan.block_frames, values[0] - start))
    yield decoder.flush()


def _stream_rate_blocks(model: ConvCodec, plan: _Plan, info: StreamInfo, path: Path) -> Iterator[np.ndarray]:
    """``[n, C]`` float blocks at the stream's rate: ``plan.total`` samples in all where the end
    packet gave it, else what the packets hold."""
    resample = _resampler(model.sample_rate, info.sample_rate, info.channels)
    left = plan.total

    def emit(wav: torch.Tensor, last: bool = False) -> np.ndarray:
        nonlocal left
        audio = resample(wav[:, 0].numpy().T.astype(np.float64), last=last)
        if left is not None:
            audio = audio[:left]
            left -= len(audio)
        return audio.astype(np.float32)

    held = None   # each block is resampled once the next shows whether it is the last
    for block in _model_rate_blocks(model, plan, info.channels, path):
        if held is not None:
            yield emit(held)
        held = block
    yield emit(held, last=True)
    if left:
        yield np.zeros((left, info.channels), dtype=np.float32)


def decode_stream_file(model: ConvCodec, input_path: Path | str, output_path: Path | str,
                       force: bool = False, sample_rate: int | None = None,
                       channels: int | None = None, sample_format: str | None = None) -> CodingReport:
    """Decode a saved packet stream (``codec stream --save``) to audio, block by block: lost or
    damaged packets are concealed; the end packet, when present, gives the exact length.
    ``sample_rate``, ``channels`` and ``sample_format`` as in ``decode_file``.

    Raises:
        CodecError: naming the file, for a bad path, a damaged header, another model's stream, a
            gap or length that no packet loss explains, or a stream none of whose packets of
            codes can be read.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    check_paths(input_path, output_path, force)
    data = input_path.read_bytes()
    info, offset = read_stream_info(input_path, data)
    check_output_format(info.channels, sample_rate, channels, input_path)
    meta = CodesMetadata(info.model, info.weights, info.sample_rate, info.channels, 0, info.frame_rate, 1,
                         info.codebook_size, 0, global_codebook_size=info.global_codebook_size)
    if info.global_codebook_size is not None:   # (each global-code packet says how many codebooks: checked there)
        meta.global_codebooks = getattr(model.config, "global_groups", None)
    check_compatible(model, meta, input_path)
    coder = None
    if info.entropy_model is not None:
        coder = entropy_coder_for(model)
        if coder is None or coder.name != info.entropy_model or coder.weights[:8] != info.entropy_weights:
            folder = getattr(model, "model_dir", None) or model.config.name
            available = "none" if coder is None else f"'{coder.name}' ({coder.weights[:8]})"
            raise CodecError(f"{input_path}: its packets are entropy-coded with model '{info.entropy_model}' "
                             f"(weights {info.entropy_weights}), but the decoding model's ({folder}) is {available}: "
                             f"decode it with the folder of model '{info.model}' that holds that entropy model "
                             f"(--model FOLDER, or that folder in CODEC_MODELS_DIR)")
    summary = summarize_stream(data, offset, info)   # (headers and CRCs only: fast)
    plan = _plan(read_packets(data, offset, info, coder), info, max(1, summary.max_frames),
                 getattr(model, "global_code", None) is not None,
                 max(1, int(block_seconds(info.channels) * model.frame_rate)), input_path)
    if not plan.frame_packets and (plan.lost or plan.total or summary.damaged_bytes):
        raise CodecError(f"{input_path}: damaged: none of its packets of codes can be read (does its header, "
                         f"{info.channels} channel{'' if info.channels == 1 else 's'} at {info.sample_rate} Hz, "
                         f"belong to its packets?)")
    # the packets' audio at the stream's rate, give or take the latency
    held = round(plan.frames * model.frame_size * info.sample_rate / model.sample_rate)
    if plan.total is not None and plan.total > held + info.sample_rate:
        raise CodecError(f"{input_path}: damaged: the end packet gives {plan.total} samples, but the packets "
                         f"hold about {held}")
    _check_not_empty_flac(held if plan.total is None else plan.total, input_path, output_path)
    subtype = chosen_subtype(sample_format, audio_format_for(output_path), output_path)
    report = _report(plan, info, summary.bytes_after_end, input_path)
    write_decoded(output_path, _stream_rate_blocks(model, plan, info, input_path), info.sample_rate, info.channels,
                  plan.total, sample_rate, channels, force, report, subtype)
    return report


def _report(plan: _Plan, info: StreamInfo, after_end: int, input_path: Path) -> CodingReport:
    report = CodingReport()
    if plan.lost:
        report.warnings.append(f"{input_path}: {plan.lost} lost or damaged packets were concealed")
    if plan.stale:
        report.warnings.append(f"{input_path}: {plan.stale} duplicated or out-of-order packets were dropped")
    if plan.no_global:
        report.warnings.append(f"{input_path}: the global code's packet was lost, so {plan.no_global} frames "
                               f"({plan.no_global / info.frame_rate:.2f} s) were concealed until one arrived")
    if plan.total is None:
        report.warnings.append(f"{input_path}: the stream has no end packet (cut short?); decoded what arrived")
    if after_end:
        report.warnings.append(f"{input_path}: {after_end} bytes after its end packet were ignored "
                               f"(another stream appended to it?)")
    return report
