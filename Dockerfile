# syntax=docker/dockerfile:1
# retain-server on the CPU backend (README "Deploying"). Two stages:
#   build    the same scripts as the README and CI (.ci/run -> scripts/test.sh): install-deps, build
#   runtime  debian:12-slim with only the Debian packages owning the libraries the two binaries
#            link (deploy/runtime-libs.sh), the binaries, the default model, a non-root user
# tests/deploy/test_dockerfiles.py (ctest DockerImages) holds this file to those scripts.
#   docker build -t retain .
#   docker run --rm -p 50051:50051 -p 9464:9464 -p 8080:8080 retain [retain-server flags, replacing CMD's]

FROM debian:12 AS build
WORKDIR /opt/retain
COPY . .
RUN bash deploy/install-deps.sh && bash scripts/build.sh -DRETAIN_BUILD_TESTS=OFF
RUN bash deploy/runtime-libs.sh list build/server/retain-server build/client/retain >build/runtime-packages.txt

FROM debian:12-slim AS runtime
RUN --mount=type=bind,from=build,source=/opt/retain,target=/opt/retain \
    bash /opt/retain/deploy/runtime-libs.sh install /opt/retain/build/runtime-packages.txt && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/retain/build/server/retain-server /opt/retain/build/client/retain /usr/local/bin/
# The shipped default model, at the path compiled into retain-server (RETAIN_DEFAULT_MODEL:
# /opt/retain/models/rwkv7-kjv-byte), so it is served without --model. Another model: a volume and
# --model NAME=DIR (deploy/k8s/README.md).
COPY --from=build /opt/retain/models /opt/retain/models
# Any non-root uid works: the server writes no file.
USER 10001:10001
# gRPC, then Prometheus /metrics.
# 8080: the OpenAI-compatible HTTP API and playground (--http-listen; off unless given).
EXPOSE 50051 9464 8080
# grpc.health.v1 through the CLI (NOT_SERVING, exit 3, while draining). A server run with TLS or
# another --listen port needs the same here: --server, --tls-ca.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["retain", "--server", "127.0.0.1:50051", "--timeout", "3", "health"]
ENTRYPOINT ["retain-server"]
CMD ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9464", "--http-listen", "0.0.0.0:8080"]
