#!/usr/bin/env bash
# After the test suite: fails if any cgroup the tests made still has a container in it,
# in any hierarchy (v1 controllers and the unified one), then removes the empty parents
# (`/triage-test`, created per containerd namespace) so nothing is left at all.
set -euo pipefail
parents=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d \
  \( -name 'triage-test*' -o -name 'triage-density-*' -o -name 'triage-v2-test-*' \) 2>/dev/null || true)
left=""
for parent in $parents; do
  left+=$(find "$parent" -mindepth 1 -type d -printf '%p\n')
done
if [ -n "$left" ]; then
  echo "cgroups left behind by the tests:"
  echo "$left"
  exit 1
fi
for parent in $parents; do
  rmdir "$parent"
done
echo "cgroups: nothing left behind ($(echo "$parents" | grep -c . || true) empty parents removed)"
