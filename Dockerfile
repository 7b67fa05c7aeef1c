# One image for every RSMS service; the command picks which: ingest, dispatcher, ledger,
# provider-sim (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY cli ./cli
COPY clients/python ./clients/python
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data rsms \
 && mkdir -p /data && chown rsms /data

USER rsms
WORKDIR /data
ENV RSMS_ACCOUNTS_FILE=/data/accounts.toml
ENTRYPOINT ["rsms"]
CMD ["--help"]
