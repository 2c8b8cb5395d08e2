#!/usr/bin/env bash
# Runs the connector inside the image the way the Airbyte platform does:
#   sh -c 'eval "$AIRBYTE_ENTRYPOINT <args>"'
# with the host's loopback reachable and the folders holding config, catalog and state mounted
# at the same paths. Used as the acceptance suite's --connector.
set -euo pipefail
image=${SOURCE_LUA_IMAGE:-airbyte/source-stock-ticker-api:dev}
mounts=()
for arg in "$@"; do
	if [ -f "$arg" ]; then
		dir=$(cd "$(dirname "$arg")" && pwd)
		mounts+=(-v "$dir:$dir:ro")
	fi
done
quoted=$(printf '%q ' "$@")
ctr=$(buildah from --quiet --pull-never "$image")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah run --isolation chroot --network host "${mounts[@]}" "$ctr" -- \
	sh -c "eval \"\$AIRBYTE_ENTRYPOINT $quoted\""
