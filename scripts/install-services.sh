#!/usr/bin/env bash
# Install the outside programs the tests and the benchmark need:
#   mosquitto  - the MQTT 5 broker the host tests and the load benchmark talk to
#   promtool   - checks deploy/prometheus/alerts.yml and a real /metrics scrape
#   dot        - Graphviz, renders `orsguard diagram` output to SVG and PNG
#
# All come from Debian's own archive (promtool ships in the `prometheus`
# package, dot in `graphviz`). Idempotent and non-interactive; when the
# programs are already on PATH it returns without touching apt.
#
# The tests start their own broker on a free loopback port with a generated
# config, so the packaged system services must not keep running: a packaged
# mosquitto would hold port 1883 and a packaged prometheus would scrape and
# write to disk for nothing.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v dot >/dev/null 2>&1 || need+=(graphviz)

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-services: mosquitto, promtool and graphviz already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive

# Keep the maintainer scripts from starting the services at all (the standard
# Debian policy-rc.d hook). Only remove the hook if this script created it.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

echo "install-services: installing ${need[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

# Belt and braces for machines where the hook above was already present but
# permissive: stop and disable whatever the packages started.
for svc in mosquitto prometheus; do
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done

command -v promtool >/dev/null
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null
echo "install-services: $(/usr/sbin/mosquitto -h 2>/dev/null | head -n1 || true)"
echo "install-services: $(promtool --version 2>&1 | head -n1)"
command -v dot >/dev/null
echo "install-services: $(dot -V 2>&1 | head -n1)"
