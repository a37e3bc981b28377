#!/bin/bash
# health_check.sh - Manual health verification script

echo "=== FerrisStreams Health Check ==="

# 1. Check service is running
echo "1. Checking service status..."
curl -s http://localhost:8080/health || echo "❌ Service not responding"

# 2. Check readiness
echo "2. Checking readiness..."
curl -s http://localhost:8080/ready | jq .

# 3. Check metrics endpoint
echo "3. Checking metrics..."
# sluice: the metric prefix is sluice_ (seed: ferris_streams_)
curl -s http://localhost:8080/metrics | grep -E "sluice_(memory|processing|circuit)"

# 4. Check recent logs
echo "4. Checking recent logs..."
# sluice: the engine's log file instead of journalctl -u ferrisstreams --since "5 minutes ago"
tail -10 "$ENGINE_LOG"

# 5. Check resource usage
echo "5. Checking resource usage..."
# sluice: $ENGINE_PID instead of $(pgrep ferrisstreams)
ps -p "$ENGINE_PID" -o pid,ppid,cmd,%mem,%cpu --no-headers

echo "=== Health Check Complete ==="
