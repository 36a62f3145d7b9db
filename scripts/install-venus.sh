#!/bin/sh
# Installs dbus-mqtt on a GX device (Venus OS) as a supervised service, the
# way Venus runs its own: files under /data (kept across firmware updates),
# a daemontools run script with multilog logging, linked into /service and
# re-linked at every boot from /data/rc.local.
#
#   install-venus.sh install dbus-mqtt.js      the bundle (runs with node)
#   install-venus.sh install dbus-mqtt-aarch64 a standalone executable
#   install-venus.sh uninstall
#   install-venus.sh check                     may it run here? (the run script asks)
#
# Options come from /data/dbus-mqtt-bridge/dbus-mqtt.conf. DESTDIR=<dir>
# installs into another root (for tests and images).
set -eu

NAME=dbus-mqtt-bridge
ROOT=${DESTDIR:-}
APP=/data/$NAME
LINK_LINE="ln -sfn $APP/service /service/$NAME # $NAME"

say() { echo "install-venus: $*" >&2; }

# Venus' own bridge publishes the same N/<portal id>/... topics; two bridges
# on one broker double every message and fight over the keep-alive.
venus_bridge() {
  if [ -e "$ROOT/service/dbus-mqtt" ] && [ ! -e "$ROOT/service/dbus-mqtt/down" ]; then
    echo "the dbus-mqtt service of Venus OS (/service/dbus-mqtt)"
  elif grep -qs '^[[:space:]]*plugin[[:space:]].*dbus' "$ROOT/etc/flashmq/flashmq.conf"; then
    echo "FlashMQ's D-Bus plugin (/etc/flashmq/flashmq.conf)"
  fi
}

# The broker this bridge is configured for is the GX's own when no -q/--mqtt
# names another host.
local_broker() {
  DBUS_MQTT_ARGS=
  [ -f "$ROOT$APP/dbus-mqtt.conf" ] && . "$ROOT$APP/dbus-mqtt.conf"
  set -- $DBUS_MQTT_ARGS
  broker=127.0.0.1
  while [ $# -gt 0 ]; do
    case "$1" in
      -q | --mqtt-server | --mqtt) broker=${2:-}; shift ;;
    esac
    shift
  done
  host=${broker#*://}
  host=${host%%[:/]*}
  case "$host" in 127.0.0.1 | localhost | "" | "[") return 0 ;; esac
  return 1
}

check() {
  other=$(venus_bridge)
  if [ -n "$other" ] && local_broker; then
    say "refusing to run: $other already publishes the GX's values on the local broker."
    say "Either turn that one off (on the GX: Settings > Services > MQTT; where the Python"
    say "bridge runs: svc -d /service/dbus-mqtt and touch /service/dbus-mqtt/down), or point"
    say "this bridge at another broker with -q <host> in DBUS_MQTT_ARGS of $APP/dbus-mqtt.conf."
    return 1
  fi
}

write_config() {
  [ -f "$ROOT$APP/dbus-mqtt.conf" ] && return
  cat >"$ROOT$APP/dbus-mqtt.conf" <<'EOF'
# Options of the dbus-mqtt bridge (dbus-mqtt --help lists them all).
# Read at every start; apply a change with: svc -t /service/dbus-mqtt-bridge
DBUS_MQTT_ARGS="-q 127.0.0.1 -k 60"
# The broker's password, when it needs one; it stays out of the process list.
DBUS_MQTT_PASSWORD=""
EOF
}

write_service() {
  program=$1
  mkdir -p "$ROOT$APP/service/log"
  cat >"$ROOT$APP/service/run" <<EOF
#!/bin/sh
# Started and restarted by svscan; the output goes to multilog (log/run).
exec 2>&1
cd -P "\$(dirname "\$0")/.." || exit 1
if ! DESTDIR="\${PWD%$APP}" sh ./install-venus.sh check; then sleep 60; exit 1; fi
. ./dbus-mqtt.conf
export DBUS_MQTT_PASSWORD
exec $program \$DBUS_MQTT_ARGS
EOF
  cat >"$ROOT$APP/service/log/run" <<EOF
#!/bin/sh
exec multilog t s25000 n4 /var/log/$NAME
EOF
  chmod 755 "$ROOT$APP/service/run" "$ROOT$APP/service/log/run"
}

install() {
  artifact=${1:?usage: install-venus.sh install <dbus-mqtt.js | dbus-mqtt-<arch>>}
  [ -f "$artifact" ] || { say "no such file: $artifact"; exit 2; }
  mkdir -p "$ROOT$APP" "$ROOT/service"
  write_config
  check || exit 1
  case "$artifact" in
    *.js | *.mjs)
      # .mjs: every Node (18 too) and Deno load it as the ES module it is.
      cp "$artifact" "$ROOT$APP/dbus-mqtt.mjs"
      program="node --optimize-for-size --no-concurrent-recompilation ./dbus-mqtt.mjs"
      [ -n "$ROOT" ] || command -v node >/dev/null ||
        say "warning: no node on this device; install a standalone executable instead"
      ;;
    *)
      cp "$artifact" "$ROOT$APP/dbus-mqtt"
      chmod 755 "$ROOT$APP/dbus-mqtt"
      program="./dbus-mqtt"
      ;;
  esac
  cp "$0" "$ROOT$APP/install-venus.sh"
  write_service "$program"
  ln -sfn "$APP/service" "$ROOT/service/$NAME"
  rc="$ROOT/data/rc.local"
  [ -f "$rc" ] || printf '#!/bin/sh\n' >"$rc"
  grep -qxF "$LINK_LINE" "$rc" || echo "$LINK_LINE" >>"$rc"
  chmod 755 "$rc"
  say "installed in $APP; svscan starts it within seconds. Options: $APP/dbus-mqtt.conf,"
  say "log: tail -F /var/log/$NAME/current | tai64nlocal"
}

uninstall() {
  if [ -z "$ROOT" ] && command -v svc >/dev/null; then
    svc -d "/service/$NAME" "/service/$NAME/log" 2>/dev/null || true
  fi
  rm -f "$ROOT/service/$NAME"
  rc="$ROOT/data/rc.local"
  if [ -f "$rc" ]; then
    grep -vxF "$LINK_LINE" "$rc" >"$rc.new" || true
    cat "$rc.new" >"$rc" && rm -f "$rc.new"
  fi
  rm -rf "$ROOT$APP"
  say "uninstalled"
}

case "${1:-}" in
  install) shift; install "$@" ;;
  uninstall) uninstall ;;
  check) check ;;
  *) echo "usage: install-venus.sh install <artifact> | uninstall | check" >&2; exit 2 ;;
esac
