-- The app's data for `make bench-postgres`, in the schema of the app's migrations (schema.sql):
-- :users users and :invoices receipts with their items, made by SQL in a few seconds and the same
-- on every run (setseed; ids from the row numbers). psql -v users=N -v invoices=N -v anchor=DATE.
--
-- Like make bench-app's seed (app/bench/run_bench.py), per receipt: one of 8 stores, bought on one
-- of the 731 days up to :anchor, uploaded the same day or up to 3 days later, 3-20 items (192
-- products, 1-4 of each at 1.99-49.99), 90 % confirmed and 10 % extracted, one photo record in
-- images. Unlike it, many users, and not all alike: receipt i belongs to user
-- 1 + floor(users x r^2) (r uniform in [0, 1)), so user 1 has about 3 % of the receipts (a small
-- business) and the median user about 70 (one a week or so, for 1,000 users and 100,000 receipts).
-- Rows go in upload order, as the app inserts them.
\set ON_ERROR_STOP on
SELECT setseed(0.42);

INSERT INTO users (id, email, password_hash, created_at)
SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
       'user' || n || '@bench.example',
       '$argon2id$v=19$m=65536,t=3,p=4$' || left(md5('salt' || n), 22) || '$' || md5('hash' || n) || left(md5(n::text), 11),
       :'anchor'::date - 760
FROM generate_series(1, :users) AS n;

CREATE TEMP TABLE receipts AS
SELECT md5('invoice ' || i)::uuid AS id,
       ('00000000-0000-4000-8000-' || lpad((1 + floor(:users * random() ^ 2))::int::text, 12, '0'))::uuid AS user_id,
       :'anchor'::date - floor(random() * 731)::int AS purchased,
       random() < 0.9 AS confirmed,
       1 + floor(random() * 8)::int AS store,
       3 + floor(random() * 18)::int AS lines,
       make_interval(days => floor(random() * 4)::int, secs => floor(random() * 20001)) AS upload_delay,
       1000000 + floor(random() * 2000000)::int AS photo_bytes
FROM generate_series(1, :invoices) AS i;

CREATE TEMP TABLE lines AS
SELECT r.id AS invoice_id,
       p - 1 AS position,
       (ARRAY['Arroz', 'Feijao', 'Leite', 'Cafe', 'Acucar', 'Oleo', 'Macarrao', 'Farinha', 'Sabao',
              'Detergente', 'Papel higienico', 'Banana', 'Tomate', 'Cebola', 'Batata', 'Frango', 'Carne moida',
              'Ovos', 'Queijo', 'Presunto', 'Iogurte', 'Manteiga', 'Biscoito', 'Suco'])[1 + floor(random() * 24)::int]
         || ' ' || (ARRAY['500g', '1kg', '2kg', '5kg', '1L', '2L', 'un', 'dz'])[1 + floor(random() * 8)::int]
         AS description,
       (1 + floor(random() * 4))::numeric(12, 3) AS quantity,
       ((199 + floor(random() * 4801)) / 100)::numeric(12, 2) AS unit_price
FROM receipts AS r, LATERAL generate_series(1, r.lines) AS p;

INSERT INTO invoices (id, user_id, status, store_name, store_tax_id, purchase_date, total, images, provider,
                      created_at, updated_at, confirmed_at)
SELECT r.id, r.user_id,
       (CASE WHEN r.confirmed THEN 'confirmed' ELSE 'extracted' END)::invoice_status,
       (ARRAY['Carrefour', 'Pao de Acucar', 'Assai Atacadista', 'Extra', 'Dia', 'Atacadao', 'Sonda', 'Hirota'])[r.store],
       lpad((r.store * 1234567)::text, 8, '0') || '/0001-' || lpad((r.store * 7)::text, 2, '0'),
       r.purchased,
       t.total,
       jsonb_build_array(jsonb_build_object(
         'path', '/var/lib/invoice/uploads/' || r.user_id || '/' || r.id || '/0.jpg',
         'content_type', 'image/jpeg',
         'size', r.photo_bytes,
         'sha256', md5(r.id::text) || md5(r.user_id::text),
         'filename', 'IMG_' || to_char(r.purchased, 'YYYYMMDD') || '.jpg')),
       'ocr',
       c.created_at,
       c.created_at + CASE WHEN r.confirmed THEN interval '10 minutes' ELSE interval '1 minute' END,
       CASE WHEN r.confirmed THEN c.created_at + interval '10 minutes' END
FROM receipts AS r
CROSS JOIN LATERAL (SELECT (r.purchased + time '18:00') AT TIME ZONE 'UTC' + r.upload_delay AS created_at) AS c
JOIN (SELECT invoice_id, sum(quantity * unit_price)::numeric(12, 2) AS total FROM lines GROUP BY invoice_id) AS t
  ON t.invoice_id = r.id
ORDER BY c.created_at, r.id;

INSERT INTO invoice_items (invoice_id, position, description, quantity, unit_price, total)
SELECT l.invoice_id, l.position, l.description, l.quantity, l.unit_price, l.quantity * l.unit_price
FROM lines AS l JOIN invoices AS i ON i.id = l.invoice_id
ORDER BY i.created_at, i.id, l.position;

DROP TABLE receipts, lines;
VACUUM ANALYZE;
