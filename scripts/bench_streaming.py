"""Streaming benchmark: latency, per-frame compute time (PyTorch and ONNX Runtime, one thread),
and memory over a long streamed file.

    .venv/bin/python scripts/bench_streaming.py [--model conv-16k] [--stream-minutes 10] [--quality-files 10]

Prints one JSON object. Frame times are for encode + decode of one 20 ms frame of real speech
(a dev file, repeated), measured per call after a warm-up; memory is the RSS of a
`codec stream --input FILE --output FILE --fast` process sampled every 0.5 s.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from script_errors import at_least, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_long_files import write_speechlike  # noqa: E402
from dev_speech import add_dev_option, dev_files  # noqa: E402

from codec.audio import load_audio  # noqa: E402
from codec.models import load_model  # noqa: E402
from codec.onnx.export import export_onnx  # noqa: E402
from codec.onnx.runtime import OnnxCodec, OnnxStreamingDecoder, OnnxStreamingEncoder  # noqa: E402
from codec.streaming import StreamingDecoder, StreamingEncoder  # noqa: E402


def frame_times(encoder, decoder, audio: np.ndarray, frame: int, to_input) -> np.ndarray:
    times = []
    for start in range(0, len(audio) - frame, frame):
        block = to_input(audio[start:start + frame][None, None, :].astype(np.float32))
        begin = time.perf_counter()
        decoder.decode(encoder.encode(block))
        times.append(time.perf_counter() - begin)
    return np.array(times[20:]) * 1000


def onnx_quality(model, runtimes: dict, files: list[Path]) -> dict:
    """At 6 kbps, streaming in 1 s chunks: PESQ-WB of PyTorch and of each ONNX runtime, the share
    of codes that differ from PyTorch's, and the largest audio difference from PyTorch's."""
    from codec.evaluation import pesq_wb

    sessions = {"torch": (lambda: StreamingEncoder(model, 12), lambda: StreamingDecoder(model),
                          torch.from_numpy, lambda t: t.numpy())}
    for name, runtime in runtimes.items():
        sessions[f"onnx_{name}"] = (lambda r=runtime: OnnxStreamingEncoder(r, 12),
                                    lambda r=runtime: OnnxStreamingDecoder(r), lambda x: x, np.asarray)
    results = {name: {"pesq_wb": [], "codes_differing": [], "max_abs_diff": []} for name in sessions}
    for path in files:
        audio, rate = load_audio(path)
        audio = audio[:, 0][None, None, :].astype(np.float32)
        reference = None
        for name, (make_encoder, make_decoder, to_input, to_array) in sessions.items():
            encoder, decoder = make_encoder(), make_decoder()
            codes, out = [], []
            with torch.inference_mode():
                for start in range(0, audio.shape[-1], rate):
                    codes.append(to_array(encoder.encode(to_input(audio[..., start:start + rate]))))
                    out.append(to_array(decoder.decode(to_input(codes[-1]) if name == "torch" else codes[-1])))
                codes.append(to_array(encoder.flush()))
                out += [to_array(decoder.decode(to_input(codes[-1]) if name == "torch" else codes[-1])),
                        to_array(decoder.flush())]
            codes = np.concatenate(codes, -1)
            decoded = np.concatenate(out, -1)[0, 0, :audio.shape[-1]]
            reference = (codes, decoded) if reference is None else reference
            results[name]["pesq_wb"].append(pesq_wb(audio[0, 0], decoded, rate))
            results[name]["codes_differing"].append(float(np.mean(codes != reference[0])))
            results[name]["max_abs_diff"].append(float(np.abs(decoded - reference[1]).max()))
    return {name: {"files": len(files), "pesq_wb": round(float(np.mean(r["pesq_wb"])), 3),
                   "codes_differing_from_torch": round(float(np.mean(r["codes_differing"])), 5),
                   "max_abs_audio_diff_from_torch": float(f"{max(r['max_abs_diff']):.2g}")}
            for name, r in results.items()}


def rss_over_stream(minutes: float, model: str) -> dict:
    codec = str(Path(sys.executable).parent / "codec")
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "long.wav", Path(tmp) / "out.wav"
        write_speechlike(source, minutes, 16000, 1)
        process = subprocess.Popen([codec, "stream", "--input", str(source), "--output", str(out), "--fast",
                                    "--model", model], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = []
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                samples.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))))
            except (FileNotFoundError, StopIteration):
                pass
            time.sleep(0.5)
        exact = sf.info(str(out)).frames == sf.info(str(source)).frames if out.exists() else False
    samples_mb = np.array(samples) / 1024
    steady = samples_mb[len(samples_mb) // 10:] if len(samples_mb) > 10 else samples_mb
    return {"minutes": minutes, "rss_mb_first_10pct_end": round(float(steady[0]), 1) if len(steady) else None,
            "rss_mb_end": round(float(samples_mb[-1]), 1) if len(samples_mb) else None,
            "rss_mb_max": round(float(samples_mb.max()), 1) if len(samples_mb) else None,
            "rss_growth_mb_after_warmup": round(float(steady.max() - steady[0]), 1) if len(steady) else None,
            "exact_length": exact, "returncode": process.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="conv-16k")
    parser.add_argument("--stream-minutes", type=at_least(0), default=10.0)
    parser.add_argument("--quality-files", type=at_least(0, int), default=10,
                        help="dev files for the PESQ-WB check at 6 kbps of PyTorch, ONNX float32 and int8")
    add_dev_option(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    files = dev_files(args.dev)
    audio, rate = load_audio(files[0])
    audio = np.tile(audio[:, 0], 4)
    result = {"model": model.config.name, "latency_ms": 1000 * model.latency / model.sample_rate,
              "frame_ms": 1000 * model.frame_size / model.sample_rate}
    with torch.inference_mode():
        times = frame_times(StreamingEncoder(model, 12), StreamingDecoder(model), audio, model.frame_size,
                            torch.from_numpy)
    result["torch_1_thread_frame_ms"] = {"median": round(float(np.median(times)), 3),
                                         "p90": round(float(np.percentile(times, 90)), 3)}
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {"float32": OnnxCodec(export_onnx(model, Path(tmp) / "float32"), threads=1),
                    "int8": OnnxCodec(export_onnx(model, Path(tmp) / "int8", int8=True), threads=1)}
        for name, runtime in runtimes.items():
            times = frame_times(OnnxStreamingEncoder(runtime, 12), OnnxStreamingDecoder(runtime), audio,
                                model.frame_size, lambda x: x)
            result[f"onnx_{name}_1_thread_frame_ms"] = {"median": round(float(np.median(times)), 3),
                                                        "p90": round(float(np.percentile(times, 90)), 3)}
        if args.quality_files:
            result["quality_6kbps"] = onnx_quality(model, runtimes, files[::4][:args.quality_files])
    if args.stream_minutes:
        result["stream"] = rss_over_stream(args.stream_minutes, args.model)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_main(main)
