-- option: out_of_orderness_ms=0
SELECT customer_id, window_start, window_end,
       COUNT(*) AS orders, SUM(quantity) AS items, AVG(price) AS avg_price,
       MIN(price) AS min_price, MAX(price) AS max_price, COUNT(coupon) AS with_coupon
FROM orders
GROUP BY customer_id, TUMBLE(ts, INTERVAL '1' MINUTE)
