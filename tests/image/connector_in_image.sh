#!/usr/bin/env bash
# Runs the connector inside the image the way the Airbyte platform does:
#   sh -c 'eval "$AIRBYTE_ENTRYPOINT <args>"'
# with the host's loopback reachable (the local Polygon server) and every file argument (config,
# catalog, state, script) copied into a folder mounted read-only at /config, as the platform
# mounts them, readable by the image's non-root user. Used as the acceptance suite's --connector.
set -euo pipefail
image=${SOURCE_LUA_IMAGE:-airbyte/source-stock-ticker-api:dev}
staging=$(mktemp -d)
ctr=
cleanup() {
	[ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1
	rm -rf "$staging"
}
trap cleanup EXIT
chmod 755 "$staging"

args=()
n=0
for arg in "$@"; do
	if [ -f "$arg" ]; then
		n=$((n + 1))
		copy="$n-$(basename "$arg")"
		cp "$arg" "$staging/$copy"
		chmod 644 "$staging/$copy"
		args+=("/config/$copy")
	else
		args+=("$arg")
	fi
done
quoted=$(printf '%q ' "${args[@]}")
ctr=$(buildah from --quiet --pull-never "$image")
buildah run --isolation chroot --network host -v "$staging:/config:ro" "$ctr" -- \
	sh -c "eval \"\$AIRBYTE_ENTRYPOINT $quoted\""
