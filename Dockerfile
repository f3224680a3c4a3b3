# klingbot in a container: `docker build -t klingbot .`, then see README "Run with Docker".
# The database, its lease and backups, and the clips live in the /data volume; tokens and
# settings come from the environment (an env file with compose). Linted by hadolint in make test.

# --- build: dependencies in a layer of their own, then the app as a wheel ----------------
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv

# Only the runtime lock file: this layer is rebuilt when the dependencies change, not the
# code. Exact versions, each download checked against its hash (`make lock` writes it).
COPY requirements/run.txt ./requirements/
RUN /opt/venv/bin/pip install --require-hashes --requirement requirements/run.txt

# The app as a wheel, without dependencies or build isolation: setuptools is in the lock.
COPY pyproject.toml README.md ./
COPY app ./app
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
RUN /opt/venv/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/klingbot-*.whl

# --- run: the virtualenv on a clean base, as an unprivileged user ----------------------
FROM python:3.11.13-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KLINGBOT_DB=/data/klingbot.db \
    KLINGBOT_DATA_DIR=/data \
    KLINGBOT_METRICS_LISTEN=0.0.0.0:9464 \
    KLING_CALLBACK_LISTEN=0.0.0.0:8090

RUN groupadd --system --gid 10001 klingbot \
    && useradd --system --uid 10001 --gid klingbot --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin klingbot \
    && mkdir /data \
    && chown klingbot:klingbot /data

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# /metrics and /healthz (KLINGBOT_METRICS_LISTEN; set it empty to switch them off); the
# Telegram webhook (TELEGRAM_WEBHOOK_LISTEN's default) and Kling callbacks, when they are set
EXPOSE 9464 8080 8090

# klingbot run stops on SIGTERM within 8 s: no new updates, in-flight answers finish,
# jobs stay in the database and resume at the next start.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["klingbot", "health"]

ENTRYPOINT ["klingbot"]
CMD ["run"]
