# The wavtok codec service. Build: docker build -t wavtok .   Run: docker compose up
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libsndfile reads and writes WAV/FLAC/OGG/MP3 for the soundfile package.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, so code edits do not reinstall torch.
COPY pyproject.toml README.md* ./
COPY codec ./codec
COPY server ./server
RUN pip install .

# Models live outside the installed package; point the lookup at them.
COPY models ./models
ENV WAVTOK_MODELS_DIR=/app/models \
    WAVTOK_HOST=0.0.0.0 \
    WAVTOK_PORT=8000

RUN useradd --create-home --uid 10001 wavtok
USER wavtok

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"

CMD ["wavtok", "serve", "--host", "0.0.0.0"]
