#!/usr/bin/env bash
# Make the base image locally, for machines where no image registry can be reached.
#
#   docker/make-base.sh [TAG]          (default TAG: xmr-base:bookworm; needs root, debootstrap)
#
# It is Debian bookworm, like `debian:bookworm-slim`, with the few packages the Dockerfile
# would otherwise apt-get (python3.11, its venv module, libcairo2 for cairosvg, tini) already
# in, so `docker build --build-arg BASE_IMAGE=xmr-base:bookworm` needs no network at all.
# The packages come from the Debian archive this host's apt is configured with (its sources for
# $SUITE, $SUITE-updates and $SUITE-security, as `apt-get indextargets` lists them), and the
# image keeps those sources; docs, man pages, locales and apt lists are dropped to keep it small.
set -euo pipefail
TAG=${1:-xmr-base:bookworm}
SUITE=${SUITE:-bookworm}
PACKAGES="python3.11 python3.11-venv libcairo2 tini ca-certificates"

# "URI SUITE" for each configured Debian source of $SUITE's family, component main.
SOURCES=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
            'Created-By: Packages' 'Component: main' \
          | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security"' | sort -u)
MIRROR=$(awk -v s="$SUITE" '$2 == s { print $1; exit }' <<<"$SOURCES")
[ -n "$MIRROR" ] || { echo "this host's apt has no source for $SUITE main (see /etc/apt/sources.list*)" >&2; exit 1; }

if docker image inspect "$TAG" >/dev/null 2>&1 && [ -z "${FORCE:-}" ]; then
  echo "base image $TAG already exists (FORCE=1 to remake it)"; exit 0
fi
command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
ROOTFS=$(mktemp -d /var/tmp/xmr-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
nice -n 10 debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"
# apt inside the chroot (not debootstrap --include, whose configure step fails on python3.11),
# from all of the host's sources for the suite, so updates and security fixes are in.
awk '{ print "deb " $1 " " $2 " main" }' <<<"$SOURCES" > "$ROOTFS"/etc/apt/sources.list
cp /etc/resolv.conf /etc/hosts "$ROOTFS"/etc/
mount -t proc proc "$ROOTFS"/proc
trap 'umount "$ROOTFS"/proc 2>/dev/null || true; rm -rf "$ROOTFS"' EXIT
nice -n 10 chroot "$ROOTFS" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null"
umount "$ROOTFS"/proc
# Same clean-up as the official slim images: nothing here is needed at run time.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
: > "$ROOTFS"/etc/resolv.conf   # docker bind-mounts its own at run time
cp /dev/null "$ROOTFS"/etc/hosts
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$TAG"
docker image ls "$TAG"
