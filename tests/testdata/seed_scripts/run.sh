#!/bin/bash
# Runs the seed's scripts against sluice-engine on 127.0.0.1:8080 (embedded
# broker, demo data: engine.example.yaml) and prints every answer.
#   ENGINE_BIN=target/debug/sluice-engine tests/testdata/seed_scripts/run.sh
# The incident order of the seed: health check, emergency stop, emergency
# recovery, circuit-breaker reset (with the breaker opened first by injected
# sink failures), weekly maintenance.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
ENGINE_BIN=${ENGINE_BIN:-$root/target/debug/sluice-engine}
CONFIG=${CONFIG:-$root/engine.example.yaml}
work=$(mktemp -d)
export ENGINE_LOG=$work/engine.log
export ENGINE_START="\"$ENGINE_BIN\" --config \"$CONFIG\" --enable-fault-injection >>\"$ENGINE_LOG\" 2>&1 & echo \$! > \"$work/pid\"; export ENGINE_PID=\$(cat \"$work/pid\")"
E=http://localhost:8080

start() { eval "$ENGINE_START"; }
wait_ready() { for _ in $(seq 1 150); do curl -sf $E/ready >/dev/null && return 0; sleep 0.2; done; return 1; }
section() { printf '\n\n######## %s\n' "$*"; }

start
export ENGINE_PID
wait_ready || { echo "engine not ready"; cat "$ENGINE_LOG"; exit 1; }
sleep 6   # demo data flowing, one history sample taken

section "health_check.sh"
bash "$here/health_check.sh"

section "emergency_stop.sh"
bash "$here/emergency_stop.sh"
echo "(engine exit: $(kill -0 "$ENGINE_PID" 2>/dev/null && echo running || echo stopped))"

section "emergency_recovery.sh"
bash "$here/emergency_recovery.sh"
export ENGINE_PID=$(cat "$work/pid")

section "open the sink breaker (fault injection), then cb_emergency_reset.sh"
curl -s -X POST $E/admin/fault-injection -d '{"sink_failures": 200}'; echo
for _ in $(seq 1 100); do curl -s $E/metrics | grep -q '^sluice_circuit_breaker_state{name="sink"} 1' && break; sleep 0.1; done
curl -s $E/metrics | grep '^sluice_circuit_breaker_state'
curl -s -X DELETE $E/admin/fault-injection; echo
echo yes | bash "$here/cb_emergency_reset.sh"

section "weekly_maintenance.sh"
bash "$here/weekly_maintenance.sh"
for f in /tmp/resource_analysis_$(date +%Y%m%d).json /tmp/performance_report_$(date +%Y%m%d).json /tmp/health_check_$(date +%Y%m%d).log; do
  echo "--- $f ($(wc -c <"$f") bytes)"; head -c 1500 "$f"; echo
done

section "other_calls.sh"
bash "$here/other_calls.sh"

kill -TERM "$ENGINE_PID"
