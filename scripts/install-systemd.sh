#!/usr/bin/env bash
# Installs gpud as a systemd service; safe to run again (an upgrade keeps the data, the user and the API keys).
#
#   sudo scripts/install-systemd.sh                 # publishes from this checkout into /opt/gpud, then enables gpud
#   sudo scripts/install-systemd.sh --from DIR      # installs an existing self-contained publish instead
#   scripts/install-systemd.sh --root DIR ...       # into a staging root (images, tests): no user lookup on the host,
#                                                   # no systemctl
#
# What it does: creates the `gpud` system user, /var/lib/gpud (0750) and /etc/gpud/gpud.env (0640, root:gpud) with a
# freshly generated API key if none exists yet, copies the build to /opt/gpud and the unit to
# /etc/systemd/system, then daemon-reload + enable --now.
set -euo pipefail
cd "$(dirname "$0")/.."

root="" from="" backend="${GPUD_BACKEND:-cpu}"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --from) from="${2:?--from needs a directory}"; shift 2 ;;
    --backend) backend="${2:?--backend needs cpu or cuda}"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }

# 1. The service user (no home, no shell), in the staging root's files when --root is given.
prefix=()
[ -n "$root" ] && prefix=(--prefix "$root")
if ! grep -q '^gpud:' "$root/etc/passwd" 2>/dev/null; then
  useradd "${prefix[@]}" --system --user-group --home-dir /var/lib/gpud --no-create-home --shell /usr/sbin/nologin gpud
  echo "created user gpud"
fi
uid=$(awk -F: '$1 == "gpud" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "gpud" { print $4 }' "$root/etc/passwd")

# 2. The build.
if [ -z "$from" ]; then
  from=$(mktemp -d)
  trap 'rm -rf "$from"' EXIT
  dotnet publish src/Gpud/Gpud.csproj -c Release -r linux-x64 --self-contained -p:TorchBackend="$backend" -o "$from" >/dev/null
  rm -rf "$from"/runtimes/win-* "$from"/runtimes/osx-*
fi
[ -x "$from/gpud" ] || { echo "$from has no gpud executable (a self-contained linux-x64 publish)" >&2; exit 1; }
install -d -m 0755 "$root/opt/gpud"
cp -a "$from"/. "$root/opt/gpud/"

# 3. State and configuration. The env file is written once and never overwritten: it holds the keys clients use.
install -d -m 0750 -o "$uid" -g "$gid" "$root/var/lib/gpud"
install -d -m 0750 -o 0 -g "$gid" "$root/etc/gpud"
env_file="$root/etc/gpud/gpud.env"
if [ ! -e "$env_file" ]; then
  key="sk-gpud-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  umask 027
  cat > "$env_file" <<ENV
# gpud settings (Gpud__Section__Key=value); restart gpud after a change. Keep this file 0640 root:gpud.
Gpud__ApiKeys__0=$key
# Listen beyond loopback (the unit listens on 127.0.0.1:8080 by default):
# ASPNETCORE_URLS is ignored; override ExecStart with a drop-in to change --urls.
# Gpud__Models__llama-3.2-1b__Path=/srv/models/Llama-3.2-1B-Instruct
ENV
  chown 0:"$gid" "$env_file"
  chmod 0640 "$env_file"
  echo "wrote $env_file with a new API key (read it there: clients send it as 'Authorization: Bearer <key>')"
else
  echo "kept $env_file"
fi

# 4. The unit.
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 systemd/gpud.service "$root/etc/systemd/system/gpud.service"

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable gpud >/dev/null
  systemctl restart gpud
  echo "gpud is running: systemctl status gpud; journalctl -u gpud -f"
else
  echo "installed into ${root:-/} (systemd not running here: start it with systemctl enable --now gpud)"
fi
