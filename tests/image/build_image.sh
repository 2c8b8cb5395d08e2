#!/usr/bin/env bash
# Builds the connector image with buildah, with no Docker engine. When debian:bookworm-slim is not
# in local storage (Docker Hub is out of reach here), makes it from the Debian mirror with
# mmdebstrap and tags it with that name, so the Dockerfile stays the one `docker build` uses.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:?image name}
version=${2:?version}
base=docker.io/library/debian:bookworm-slim

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
	tar=$(mktemp --suffix=.tar)
	trap 'rm -f "$tar"' EXIT
	echo "making $base with mmdebstrap (about a minute)"
	mmdebstrap --quiet --variant=minbase --include=ca-certificates \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		bookworm "$tar"
	ctr=$(buildah from scratch)
	buildah add --quiet "$ctr" "$tar" /
	buildah config --cmd /bin/bash "$ctr"
	buildah commit --quiet --rm "$ctr" "$base" >/dev/null
fi
buildah bud --quiet --isolation chroot --network host --layers \
	--build-arg "VERSION=$version" -t "$image" .
