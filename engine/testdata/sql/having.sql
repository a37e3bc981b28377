-- option: out_of_orderness_ms=0
SELECT customer_id, COUNT(*) AS n, SUM(price) * 2 AS doubled
FROM orders
WHERE status <> 'test'
GROUP BY customer_id, TUMBLE(ts, INTERVAL '10' SECOND)
HAVING COUNT(*) >= 2 AND SUM(price) > 5
