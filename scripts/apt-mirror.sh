#!/usr/bin/env bash
# Prints the Debian archive this host's APT uses (its first enabled `deb` source that is not
# the security archive), so that roots made with debootstrap come from the node's own mirror
# (a hospital's local one) rather than a hard-coded address. Reads deb822 `*.sources` files
# first, then `sources.list` and `*.list` one-line entries; skips comments, `Enabled: no`
# stanzas, `deb-src`, security suites and non-HTTP(S) URIs. Exits 1, saying why, when there is
# none. APT_DIR (default /etc/apt) is where it looks.
#
#   scripts/apt-mirror.sh            e.g. http://deb.debian.org/debian
set -euo pipefail

APT_DIR=${APT_DIR:-/etc/apt}

# One candidate "URI SUITE" per line, in APT's order.
candidates() {
  local file
  for file in "$APT_DIR"/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # deb822: stanzas separated by blank lines; fields may be folded onto several lines.
    awk '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^[ \t]*(no|false)[ \t]*$/) {
          n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
          for (i = 1; i <= n; i++) if (u[i] != "") for (j = 1; j <= m; j++) if (s[j] != "") print u[i], s[j]
        }
        types = ""; uris = ""; suites = ""; enabled = ""; field = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { if (field == "uris") uris = uris " " $0; else if (field == "suites") suites = suites " " $0; next }
      {
        key = tolower(substr($0, 1, index($0, ":") - 1)); value = substr($0, index($0, ":") + 1)
        field = key
        if (key == "types") types = value
        else if (key == "uris") uris = value
        else if (key == "suites") suites = value
        else if (key == "enabled") enabled = value
      }
      END { flush() }
    ' "$file"
  done
  for file in "$APT_DIR/sources.list" "$APT_DIR"/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$file" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
  done
}

while read -r uri suite; do
  case "$uri" in http://* | https://*) ;; *) continue ;; esac
  case "$suite" in *-security | */updates) continue ;; esac
  case "$uri" in *debian-security*) continue ;; esac
  echo "${uri%/}"
  exit 0
done < <(candidates)
echo "no Debian archive among the deb sources in $APT_DIR (set TRIXIE_MIRROR)" >&2
exit 1
