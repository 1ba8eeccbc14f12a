# retain on the CPU backend. The same scripts as the README and CI: install, build, run.
FROM debian:12
WORKDIR /src
COPY . /src
RUN bash deploy/install-deps.sh && bash scripts/build.sh && rm -rf /var/lib/apt/lists/*
# Until the gRPC server lands, the image runs the engine's CLI on the default model.
ENTRYPOINT ["/src/build/engine/retain-run"]
CMD ["--prompt", "And God said", "--max-tokens", "200"]
