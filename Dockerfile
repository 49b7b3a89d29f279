# CPU image with the package and the shipped models; `codec` is the entrypoint. Run it as your own
# user, so that it may write into the folder you mount (and its files are yours):
#   docker build -t codec . && docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" codec encode /data/in.wav /data/out.codes
#   docker run --rm -i codec encode - - < in.wav > out.codes      (stdin and stdout work too)

# pesq is published only as source: compile its wheel where a C compiler is (the full image),
# for the same Debian release as the runtime image below.
FROM python:3.11-bookworm AS wheels
RUN pip wheel --no-cache-dir --wheel-dir /wheels pesq==0.0.4

# No apt packages at run time: the soundfile wheel bundles libsndfile (WAV, FLAC, OGG, MP3) and
# soxr bundles libsoxr; PortAudio is needed only by `codec stream` on real devices.
FROM python:3.11-slim-bookworm
WORKDIR /opt/codec
# CPU build of torch first, so the package's torch requirement is already met.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY --from=wheels /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
COPY pyproject.toml README.md LICENSE ./
COPY codec ./codec
COPY cli ./cli
COPY models ./models
COPY recipes ./recipes
# A numeric user (hadolint DL3066) resolves the same on any host, e.g. for files written to /data.
RUN pip install --no-cache-dir -e . \
    && useradd --uid 10001 --create-home codec
USER 10001
# Run as --user UID:GID, a user the image does not know, Docker would set HOME to /, where nothing may
# be written: codec stream would then export its ONNX graphs anew for every run, and onnxruntime and
# matplotlib would print warnings. Any user may write in /tmp.
ENV HOME=/tmp
WORKDIR /data
ENTRYPOINT ["codec"]
CMD ["--help"]
