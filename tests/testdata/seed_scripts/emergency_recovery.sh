#!/bin/bash
# emergency_recovery.sh - Emergency service recovery

echo "EMERGENCY RECOVERY - FerrisStreams"
echo "Timestamp: $(date)"

# 1. Verify system resources
echo "1. Checking system resources..."
free -h
df -h

# 2. Start service with safe configuration
echo "2. Starting with safe configuration..."
# sluice: start the engine with the config of this run (seed: cp config.safe.yaml config.yaml; systemctl start ferrisstreams)
eval "$ENGINE_START"

# 3. Wait for service to be ready
echo "3. Waiting for service readiness..."
until curl -sf http://localhost:8080/ready; do
    echo "Service not ready, waiting..."
    sleep 10
done

# 4. Enable request processing
echo "4. Enabling request processing..."
curl -X POST http://localhost:8080/admin/maintenance/disable

echo "Emergency recovery complete"
