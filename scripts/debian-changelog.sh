#!/bin/sh
# Prints debian/changelog for version VERSION (the repo's VERSION file is
# the one place the version is set; the package takes it from there).
set -eu
version=${1:?usage: scripts/debian-changelog.sh VERSION}
cat <<CHANGELOG
llamachatd ($version) unstable; urgency=medium

  * llamachatd $version, packaged from its repository (make deb).

 -- llamachatd maintainers <llamachatd@example.org>  $(date -R)
CHANGELOG
