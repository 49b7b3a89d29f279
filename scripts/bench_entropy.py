"""Entropy coding speed and file size on the dev set: real-time factors of entropy encode and
decode on one thread, and the file bitrate with and without the entropy model (all bytes counted).

    python scripts/bench_entropy.py [--model conv-16k] [--bitrate 6] [--files N] [--entropy-dir DIR]
                                    [--other-cores Sandybridge,Nehalem]

Only the range coding is timed (the codec's own encode/decode is not): codes come from the codec
first, then each file's codes are entropy-encoded and decoded, and checked to round-trip exactly.
``--other-cores`` also decodes every file in another process whose OpenBLAS uses another CPU
generation's kernels (``OPENBLAS_CORETYPE``), as a machine with another CPU would.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from script_errors import at_least, first_paragraph, run_main  # first: a Ctrl-C while torch loads is one line

# isort: split
import numpy as np
import soundfile as sf
import torch
from dev_speech import add_dev_option, dev_files

from codec import load_model
from codec.bitstream import from_bytes, to_bytes
from codec.entropy import EntropyCoder, load_entropy_model


def main() -> None:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("--model", default="conv-16k")
    parser.add_argument("--bitrate", type=float, nargs="+", default=[6.0])
    parser.add_argument("--files", type=at_least(1, int), default=40)
    parser.add_argument("--entropy-dir", type=Path, help="an entropy model other than the codec's own")
    add_dev_option(parser)
    parser.add_argument("--other-cores", default="", help="comma-separated OPENBLAS_CORETYPE values to decode with "
                        "(OpenBLAS names, e.g. Haswell; it ignores a name it does not know)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = load_model(args.model)
    if unsupported := [b for b in args.bitrate if b not in codec.bitrates_kbps]:
        raise SystemExit(f"error: {args.model} has no {', '.join(f'{b:g}' for b in unsupported)} kbps; it codes "
                         f"{', '.join(f'{b:g}' for b in codec.bitrates_kbps)}")
    entropy_model = load_entropy_model(args.entropy_dir) if args.entropy_dir else codec.network.entropy_model
    if entropy_model is None and args.entropy_dir:
        raise SystemExit(f"error: {args.entropy_dir}: no entropy model there (entropy.safetensors and its config, "
                         f"as codec train writes them)")
    if entropy_model is None:
        raise SystemExit(f"error: {args.model} has no entropy model; give one with --entropy-dir, or a model "
                         f"that has one (conv-16k)")
    coder = EntropyCoder(entropy_model)
    files = dev_files(args.dev)[:args.files]
    audio = [sf.read(f, dtype="float64") for f in files]
    seconds = sum(len(a) / rate for a, rate in audio)
    print(f"{len(files)} dev files, {seconds:.1f} s of audio, entropy model {entropy_model.config.name}")
    for bitrate in args.bitrate:
        codes = [codec.encode(a, rate, bitrate)._file() for a, rate in audio]
        plain = sum(len(to_bytes(c)) for c in codes)
        started = time.perf_counter()
        coded = [to_bytes(c, coder) for c in codes]
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        decoded = [from_bytes(data, coder) for data in coded]
        decode_s = time.perf_counter() - started
        assert all(np.array_equal(d.codes, c.codes) for d, c in zip(decoded, codes, strict=True)), "not lossless"
        size = sum(len(d) for d in coded)
        print(f"{bitrate:g} kbps: file {plain * 8 / seconds / 1000:.2f} -> {size * 8 / seconds / 1000:.2f} kbps "
              f"({100 * (size / plain - 1):+.1f}%); entropy encode {seconds / encode_s:.1f}x real time "
              f"({encode_s:.1f} s), decode {seconds / decode_s:.1f}x ({decode_s:.1f} s); lossless")
        for core in filter(None, args.other_cores.split(",")):
            print(f"  decoded with {core} kernels: {decode_elsewhere(coded, codes, core, args.model)}")


_DECODE = """
import sys, numpy as np
from pathlib import Path
from codec import load_model
from codec.bitstream import from_bytes
from codec.coding import entropy_coder_for
folder = Path(sys.argv[1])
coder = entropy_coder_for(load_model(sys.argv[2]).network, required=True)
count = len(list(folder.glob("*.codes")))
same = sum(np.array_equal(from_bytes((folder / f"{i}.codes").read_bytes(), coder).codes, np.load(folder / f"{i}.npy"))
           for i in range(count))
print(f"{same} of {count} files lossless")
"""


def decode_elsewhere(coded: list[bytes], codes: list, core: str, model: str) -> str:
    """Decode the files in another process with OPENBLAS_CORETYPE=core; its summary line."""
    with tempfile.TemporaryDirectory() as folder:
        for index, (data, c) in enumerate(zip(coded, codes, strict=True)):
            Path(folder, f"{index}.codes").write_bytes(data)
            np.save(Path(folder, f"{index}.npy"), c.codes)
        result = subprocess.run([sys.executable, "-c", _DECODE, folder, model], capture_output=True, text=True,
                                env={**os.environ, "OPENBLAS_CORETYPE": core})
        return result.stdout.strip() or result.stderr.strip().splitlines()[-1]


if __name__ == "__main__":
    run_main(main)
