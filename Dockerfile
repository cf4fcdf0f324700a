# The operator image: `docker build -t flinkop:0.1.0 .` (no Docker engine on the project's own
# machines, so this file is not built by `make test`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /venv /venv
RUN groupadd --gid 10001 flinkop && useradd --uid 10001 --gid 10001 --no-create-home flinkop
USER 10001:10001
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "flinkop"]
