#!/bin/bash
# The seed's other curl calls (troubleshooting, performance monitor, monthly
# maintenance, config deployment, scale-in, resource adjustment, backup and
# restore), verbatim, each printed with its answer. Run by run.sh after the
# five scripts. Lines marked `# sluice:` differ from the seed.
set -u
E=http://localhost:8080
call() { printf '\n$ %s\n' "$*"; eval "$@"; echo; }

echo "=== Troubleshooting: Circuit Breaker Open"
call 'curl http://localhost:8080/metrics | grep circuit_breaker'
call 'curl -X POST http://localhost:8080/admin/circuit-breaker/reset'
# sluice: the seed runs this under `watch -n 5`; one round here
call "curl -s http://localhost:8080/metrics | grep circuit_breaker_state"

echo "=== Troubleshooting: Memory Exhausted"
call 'curl http://localhost:8080/metrics | grep memory_usage'
call 'curl http://localhost:8080/admin/resources'
call 'curl -X POST http://localhost:8080/admin/resources/cleanup'
call 'curl -X PUT http://localhost:8080/admin/config -H "Content-Type: application/json" -d '"'"'{"resource_limits": {"max_total_memory": 1073741824}}'"'"' | head -c 300'

echo "=== Troubleshooting: Processing Stopped"
call 'curl http://localhost:8080/admin/threads | head -c 600'
call 'curl http://localhost:8080/admin/config'
call 'curl -X POST http://localhost:8080/admin/processing/restart'
sleep 6  # sluice: time between two incidents (the restart rebuilds the pipeline)

echo "=== Troubleshooting: High Latency"
call 'curl http://localhost:8080/metrics | grep latency'
call 'curl http://localhost:8080/admin/queries/performance'
call 'curl http://localhost:8080/admin/resources/utilization'
call 'curl -s -o /dev/null -w "%{http_code}\n" http://localhost:8080/admin/profile?duration=30s'
call 'curl -X PUT http://localhost:8080/admin/config -d '"'"'{"resource_limits": {"max_total_memory": 2147483648}}'"'"' | head -c 300'
call 'curl -X PUT http://localhost:8080/admin/config -d '"'"'{"processing": {"parallelism": 8}}'"'"' | head -c 300'
call 'curl -X PUT http://localhost:8080/admin/config -d '"'"'{"performance": {"batch_size": 1000, "enable_caching": true}}'"'"''

echo "=== performance_monitor.sh (one round)"
call 'curl -s http://localhost:8080/metrics | grep throughput_records_per_second'
call 'curl -s http://localhost:8080/metrics | grep processing_latency_ms'
call 'curl -s http://localhost:8080/metrics | grep memory_usage_bytes'
call 'curl -s http://localhost:8080/metrics | grep processing_errors_total'

echo "=== monthly_maintenance.sh"
call 'curl -X POST http://localhost:8080/admin/performance/update-baselines'
call 'curl -s http://localhost:8080/admin/resources/recommendations'
call 'curl -s http://localhost:8080/admin/circuit-breaker/monthly-stats'
call 'curl -s http://localhost:8080/admin/performance/weekly-report | jq -c .compared_to_baselines'

echo "=== deploy_config.sh (the engine's own config file, unchanged)"
call 'curl -X POST http://localhost:8080/admin/maintenance/enable'
call 'curl -X POST http://localhost:8080/admin/config/reload'
sleep 10
call 'curl -sf http://localhost:8080/ready || echo "❌ Service not ready after config change"'
call 'curl -X POST http://localhost:8080/admin/maintenance/disable'

echo "=== adjust_resources.sh increase 20"
call "curl -s http://localhost:8080/admin/config | jq '.resource_limits.max_total_memory'"
call "curl -s http://localhost:8080/admin/config | jq '.resource_limits.max_operator_memory'"
call 'curl -X PUT http://localhost:8080/admin/config -H "Content-Type: application/json" -d "{ \"resource_limits\": { \"max_total_memory\": 2576980377, \"max_operator_memory\": 322122547 } }" | jq -c .config.resource_limits'

echo "=== backup_config.sh"
call 'curl -s http://localhost:8080/admin/state/export > /tmp/runtime_state.json; jq -c "{version, queries: [.queries[] | {name, windows: (.windows | length)}], positions}" /tmp/runtime_state.json'
call 'curl -s http://localhost:8080/admin/metrics/export?days=30 | jq -c "{days, count, first: .samples[0]}"'
call 'curl -s http://localhost:8080/admin/version'

echo "=== restore_state.sh"
# sluice: the seed posts the state while the service is stopped (nothing
# listens then); the engine imports into a running engine in maintenance.
call 'curl -X POST http://localhost:8080/admin/state/import -H "Content-Type: application/json" -d @/tmp/runtime_state.json'
call 'curl -s -X POST http://localhost:8080/admin/maintenance/enable'
call 'curl -X POST http://localhost:8080/admin/state/import -H "Content-Type: application/json" -d @/tmp/runtime_state.json'
call 'curl -s -X POST http://localhost:8080/admin/maintenance/disable'
call 'until curl -sf http://localhost:8080/ready; do echo "Service not ready, waiting..."; sleep 10; done'

sleep 5  # sluice: time between two procedures
echo "=== scale_in.sh (on this instance)"
call 'curl -X POST http://localhost:8080/admin/maintenance/enable'
call 'curl -X POST http://localhost:8080/admin/processing/drain'
