# The Airbyte source image for source-lua. Build with `docker build -t airbyte/source-stock-ticker-api:dev .`
# or, without a Docker engine, `make image` (buildah). The build stage runs the project's own
# Makefile, so there is no second recipe to drift from `make`.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config liblua5.4-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY runtime ./runtime
# The runtime stage has no liblua: a binary linked to it would not start.
RUN make && if ldd build/source-lua | grep -q liblua; then echo "Lua is not linked statically" >&2; exit 1; fi

FROM ${BASE_IMAGE}
ARG VERSION=dev
# Only the runtime libraries: Lua is linked in statically. tzdata: streams and the
# date module read any IANA time zone from /usr/share/zoneinfo.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcurl4 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --home-dir /airbyte airbyte
COPY --from=build /src/build/source-lua /airbyte/source-lua
COPY scripts /airbyte/scripts
WORKDIR /airbyte
USER airbyte
# The platform runs `sh -c 'eval "$AIRBYTE_ENTRYPOINT spec"'`: keep it equal to ENTRYPOINT.
ENV AIRBYTE_ENTRYPOINT="/airbyte/source-lua"
ENTRYPOINT ["/airbyte/source-lua"]
LABEL io.airbyte.name="airbyte/source-stock-ticker-api" \
      io.airbyte.version="${VERSION}"
