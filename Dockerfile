# One image for every Pushline service; the service is the command:
#   docker run IMAGE ingest|resolver|sender|feedback   (also: topics, check-config, dlq)
# Settings come from PUSHLINE_* variables (README, "Configuration"); the image binds the
# ingest and the metrics/health servers to 0.0.0.0 so probes and Prometheus reach them.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
RUN groupadd --system --gid 10001 pushline \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /app pushline
COPY --from=build /install /usr/local
# Faust keeps a small data directory in the working directory.
WORKDIR /app
USER 10001:10001
ENV PYTHONUNBUFFERED=1 \
    PUSHLINE_INGEST_HOST=0.0.0.0 \
    PUSHLINE_METRICS_HOST=0.0.0.0
EXPOSE 8080 9101 9102 9103
ENTRYPOINT ["pushline"]
CMD ["ingest"]
