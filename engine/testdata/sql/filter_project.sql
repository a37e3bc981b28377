SELECT order_id, price * quantity AS total, UPPER(status) AS status
FROM orders
WHERE price > 10 AND status <> 'cancelled'
