#!/bin/bash
# cb_emergency_reset.sh - Force reset all circuit breakers

echo "EMERGENCY CIRCUIT BREAKER RESET"
echo "WARNING: This will bypass safety mechanisms!"
read -p "Are you sure? (yes/no): " confirm

if [ "$confirm" = "yes" ]; then
    echo "Resetting all circuit breakers..."
    curl -X POST http://localhost:8080/admin/circuit-breaker/reset-all
    echo "Circuit breakers reset"
    
    # Monitor for immediate failures
    echo "Monitoring for 60 seconds..."
    for i in {1..12}; do
        sleep 5
        failures=$(curl -s http://localhost:8080/metrics | grep circuit_breaker_failures_total | awk '{print $2}')
        echo "Failures: $failures"
    done
else
    echo "Reset cancelled"
fi
