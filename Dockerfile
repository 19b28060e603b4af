# Boeket: one process serving the web chat, the platform endpoints and the cycle timer.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BOEKET_HOST=0.0.0.0 \
    BOEKET_PORT=8080 \
    BOEKET_DATABASE_URL=sqlite:////data/boeket.sqlite3

# The poster's PNG and PDF are drawn by Cairo (CairoSVG), with DejaVu Sans for the text.
RUN apt-get update && apt-get install -y --no-install-recommends libcairo2 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system boeket && useradd --system --gid boeket --home-dir /app boeket \
    && mkdir -p /app /data && chown boeket:boeket /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY prompts ./prompts
COPY storage ./storage
RUN pip install --no-cache-dir .

USER boeket
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"BOEKET_PORT\", \"8080\")}/health', timeout=4).status == 200 else 1)"]

CMD ["boeket", "run"]
