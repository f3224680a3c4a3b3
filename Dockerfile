# klingbot in a container: the bot reads its tokens and settings from the environment.
# Data (the SQLite database and clips) lives in the /data volume.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
RUN pip install --no-cache-dir . && useradd --create-home klingbot && mkdir /data \
    && chown klingbot /data

USER klingbot
ENV KLINGBOT_DB=/data/klingbot.db \
    KLINGBOT_DATA_DIR=/data/clips
VOLUME ["/data"]
ENTRYPOINT ["klingbot"]
CMD ["run"]
