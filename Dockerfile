# One image for every Python process of the stack: the APIs, the pipeline, the debug UI, MLflow and the
# one-shot catalog loader. docker-compose.yml chooses the command per service (the same module commands as
# launcher/services.py, which tests/test_compose.py checks).
FROM python:3.11-slim

# DATA_CACHE_DIR: a MovieLens download must land somewhere the non-root user can write.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_CACHE_DIR=/data/cache

# libgomp1: the OpenMP runtime the BPR trainer (implicit) links against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, read from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; deps = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (what .dockerignore lets through), installed as a regular package.
COPY . /src
RUN pip install --no-deps /src && rm -rf /src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && mkdir -p /data/mlflow /data/cache /app \
    && chown -R app:app /data /app
USER app
WORKDIR /app

EXPOSE 5000 5001 5002 8000 8080
CMD ["python", "-m", "recommendations"]
