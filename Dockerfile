# retain on the CPU backend. The same scripts as the README and CI: install, build, run.
FROM debian:12
WORKDIR /src
COPY . /src
RUN bash deploy/install-deps.sh && bash scripts/build.sh && rm -rf /var/lib/apt/lists/*
EXPOSE 50051 9464
# The shipped default model, served on every interface; flags after the image name replace these.
ENTRYPOINT ["/src/build/server/retain-server"]
CMD ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9464"]
