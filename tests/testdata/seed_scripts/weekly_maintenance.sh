#!/bin/bash
# weekly_maintenance.sh - Weekly maintenance tasks

echo "=== Weekly FerrisStreams Maintenance ==="
echo "Date: $(date)"

# 1. Log rotation
echo "1. Rotating logs..."
# sluice: skipped (seed: logrotate -f /etc/logrotate.d/ferrisstreams); the engine logs to stderr

# 2. Metrics cleanup
echo "2. Cleaning up old metrics..."
curl -X POST http://localhost:8080/admin/metrics/cleanup?older_than=7d

# 3. Resource usage analysis
echo "3. Analyzing resource usage..."
curl -s http://localhost:8080/admin/resources/analysis > /tmp/resource_analysis_$(date +%Y%m%d).json

# 4. Performance report
echo "4. Generating performance report..."
curl -s http://localhost:8080/admin/performance/weekly-report > /tmp/performance_report_$(date +%Y%m%d).json

# 5. Health check
echo "5. Running comprehensive health check..."
# sluice: the health check beside this script (seed: ./health_check.sh)
"$(dirname "$0")/health_check.sh" > /tmp/health_check_$(date +%Y%m%d).log

echo "Weekly maintenance complete"
