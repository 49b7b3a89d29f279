"""Long files: encode and decode time and peak memory (RSS) against duration.

    .venv/bin/python scripts/bench_long_files.py [--minutes 1 10 60] [--stereo48k-minutes 30]

Writes speech-like test signals (harmonic bursts with pauses, a different pitch per channel) to a
temporary folder, runs `codec encode` and `codec decode` on each as separate processes under
/usr/bin/time, and prints one JSON line per file: seconds and peak RSS (MB) for each step, and
whether the decoded file has the input's exact length, rate and channels.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from script_errors import at_least, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import soundfile as sf


def write_speechlike(path: Path, minutes: float, rate: int, channels: int) -> None:
    rng = np.random.default_rng(0)
    block = rate * 10
    total = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, subtype="PCM_16") as sink:
        for start in range(0, total, block):
            t = (start + np.arange(min(block, total - start))) / rate
            columns = []
            for channel in range(channels):
                pitch = 2 * np.pi * (120 + 40 * channel) * t + 3 * np.sin(2 * np.pi * 0.5 * t)
                voiced = sum(np.sin(k * pitch) / k for k in range(1, 12))
                syllables = np.maximum(np.sin(2 * np.pi * 2.3 * t + channel), 0) ** 2
                columns.append(0.15 * voiced * syllables + 1e-3 * rng.standard_normal(len(t)))
            sink.write(np.stack(columns, axis=1))


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command."""
    result = subprocess.run(["/usr/bin/time", "-f", "%M %e", *command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr}")
    rss_kb, seconds = result.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=at_least(0), nargs="*", default=[1, 10, 60])
    parser.add_argument("--stereo48k-minutes", type=at_least(0), default=30)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    if any(minutes <= 0 for minutes in args.minutes) or args.stereo48k_minutes < 0:
        parser.error("--minutes takes durations above 0, --stereo48k-minutes one of 0 (left out) or more")
    codec = str(Path(sys.executable).parent / "codec")
    model = ["--model", args.model] if args.model else []
    cases = [(m, 16000, 1) for m in args.minutes]
    if args.stereo48k_minutes:
        cases.append((args.stereo48k_minutes, 48000, 2))
    with tempfile.TemporaryDirectory() as tmp:
        for minutes, rate, channels in cases:
            source = Path(tmp) / f"in_{minutes:g}min_{rate}_{channels}ch.wav"
            write_speechlike(source, minutes, rate, channels)
            codes, decoded = source.with_suffix(".codes"), source.with_name("out.wav")
            encode_s, encode_mb = timed([codec, "encode", str(source), str(codes), *model, "--force"])
            decode_s, decode_mb = timed([codec, "decode", str(codes), str(decoded), *model, "--force"])
            a, b = sf.info(str(source)), sf.info(str(decoded))
            same = (a.frames, a.samplerate, a.channels) == (b.frames, b.samplerate, b.channels)
            print(json.dumps({"minutes": minutes, "sample_rate": rate, "channels": channels,
                              "encode_s": encode_s, "encode_peak_rss_mb": round(encode_mb),
                              "decode_s": decode_s, "decode_peak_rss_mb": round(decode_mb),
                              "exact_shape": same}),
                  flush=True)
            for path in (source, codes, decoded):
                path.unlink()


if __name__ == "__main__":
    run_main(main)
