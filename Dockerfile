# The tsdb server image. `docker compose up --build -d` builds it (see docker-compose.yml);
# `docker compose exec tsdb pytest` runs the test suite inside it (tests needing the Debian
# `prometheus` package skip themselves here).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# An unprivileged user with a fixed uid, so files on the data volume keep a stable owner
# across rebuilds. /app is theirs because pytest writes its caches next to the tests.
RUN groupadd --system --gid 10001 tsdb \
 && useradd --system --uid 10001 --gid tsdb --home-dir /app --no-create-home --shell /usr/sbin/nologin tsdb \
 && mkdir -p /app /data \
 && chown tsdb:tsdb /app /data

WORKDIR /app

# 1. Dependencies only (runtime + dev, so the tests run in the container), read from
#    pyproject.toml alone: this layer is rebuilt when pyproject.toml changes, not on every
#    source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# 2. The source, installed without dependencies (editable: one copy of the code, the one the
#    tests in /app/tests import), then the tests and the deploy files tests/deploy checks.
COPY --chown=tsdb:tsdb README.md LICENSE ./
COPY --chown=tsdb:tsdb tsdb ./tsdb
RUN pip install --no-deps -e .
COPY --chown=tsdb:tsdb tests ./tests
COPY --chown=tsdb:tsdb docker-compose.yml Dockerfile .dockerignore ./
COPY --chown=tsdb:tsdb deploy ./deploy
COPY --chown=tsdb:tsdb scripts ./scripts

USER tsdb

# The write-ahead log and snapshots live here; mount a volume to keep them across containers.
ENV DATA_DIR=/data \
    TSDB_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

# No curl in the slim image: Python itself asks for the liveness probe (urlopen raises on
# anything but 2xx, so the exit status is the answer).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/-/healthy' % os.environ.get('TSDB_PORT', '8000'), timeout=4)"]

# 0.0.0.0: reachable from the other containers and the published port (the CLI default is
# loopback). uvicorn handles SIGTERM: in-flight requests finish and the database is closed.
CMD ["tsdb", "serve", "--host", "0.0.0.0"]
