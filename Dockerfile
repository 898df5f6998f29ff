# syntax=docker/dockerfile:1
# keng's programs for production, on Debian 12 like the machines keng is built and tested
# on. Two stages: the first builds with the -dev packages of scripts/install-deps.sh, the
# second carries only their runtime libraries, curl for the health checks and
# ca-certificates for brokers whose TLS certificates a public CA signed.
#
#   docker build -t keng .          (docker compose build does the same)
#
# The image holds every keng-* program in /usr/local/bin, the generated default board
# registry in /usr/share/keng/boards.csv, and runs as the unprivileged user keng
# (uid 10001), whose state lives in /var/lib/keng. docker-compose.yml says which program
# each container runs; see docs/OPERATIONS.md.

FROM debian:12-slim AS build

# The build half of scripts/install-deps.sh. libcmocka-dev is only there because the CMake
# project configures its tests too; nothing of it reaches the runtime stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        librdkafka-dev libavro-dev libuv1-dev libjansson-dev liblmdb-dev libhttp-parser-dev \
        libcmocka-dev libssl-dev libcurl4-openssl-dev libcrypt-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# The context has no .git: --version names the commit given here
# (docker build --build-arg KENG_COMMIT=$(git rev-parse --short=12 HEAD) .).
ARG KENG_COMMIT=unknown
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKENG_COMMIT="${KENG_COMMIT}" \
    && cmake --build /build -j"$(nproc)" \
    && /build/bin/keng-registry --write /build/boards.csv


FROM debian:12-slim AS runtime

# The runtime libraries of the -dev packages above, one for one.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        librdkafka1 libavro23 libuv1 libjansson4 liblmdb0 libhttp-parser2.9 libssl3 libcurl4 libcrypt1 \
        curl ca-certificates lmdb-utils \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 keng \
    && useradd --system --uid 10001 --gid keng --home-dir /var/lib/keng --shell /usr/sbin/nologin keng \
    && mkdir -p /var/lib/keng /usr/share/keng /etc/keng \
    && chown keng:keng /var/lib/keng

COPY --from=build /build/bin/ /usr/local/bin/
COPY --from=build /build/boards.csv /usr/share/keng/boards.csv
COPY --chmod=0755 deploy/with-state-slot.sh /usr/local/bin/with-state-slot

USER keng
WORKDIR /var/lib/keng
EXPOSE 8080 8088

# No ENTRYPOINT: the command names the program, so that
# `docker compose run --rm keng-ingest keng-registry --check /etc/keng/boards.csv` works too.
CMD ["keng-aggregate", "--help"]
