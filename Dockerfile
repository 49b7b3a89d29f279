# CPU image with the package and the shipped default model; `codec` is the entrypoint.
#   docker build -t codec . && docker run --rm -v "$PWD:/data" codec encode /data/in.wav /data/out.codes
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/codec
# CPU build of torch first, so the package's torch requirement is already met.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY codec ./codec
COPY cli ./cli
COPY models ./models
RUN pip install --no-cache-dir -e . \
    && useradd --create-home codec
USER codec
WORKDIR /data
ENTRYPOINT ["codec"]
CMD ["--help"]
