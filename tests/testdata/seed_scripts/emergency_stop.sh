#!/bin/bash
# emergency_stop.sh - Emergency service shutdown

echo "EMERGENCY STOP - FerrisStreams"
echo "Timestamp: $(date)"

# 1. Stop accepting new requests
echo "1. Disabling new requests..."
curl -X POST http://localhost:8080/admin/maintenance/enable

# 2. Drain processing queue
echo "2. Draining processing queue..."
curl -X POST http://localhost:8080/admin/processing/drain

# 3. Stop service
echo "3. Stopping service..."
# sluice: stop the engine process of this run (seed: systemctl stop ferrisstreams)
kill -TERM "$ENGINE_PID"
for _ in $(seq 1 100); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 0.1; done

echo "Emergency stop complete"
