-- Sample data for the quick start and the integration tests: an orders database with personal data in it.
CREATE TABLE IF NOT EXISTS public.users (
  id          integer PRIMARY KEY,
  name        text NOT NULL,
  email       text NOT NULL,
  ssn         text NOT NULL,
  created_at  date NOT NULL DEFAULT DATE '2026-01-01'
);
CREATE TABLE IF NOT EXISTS public.orders (
  id       integer PRIMARY KEY,
  user_id  integer NOT NULL REFERENCES public.users(id),
  total    numeric(10,2) NOT NULL,
  status   text NOT NULL DEFAULT 'open'
);
CREATE TABLE IF NOT EXISTS public.payments (
  id           integer PRIMARY KEY,
  order_id     integer NOT NULL REFERENCES public.orders(id),
  card_number  text NOT NULL,
  amount       numeric(10,2) NOT NULL
);
INSERT INTO public.users (id, name, email, ssn) VALUES
  (1, 'Ada Lovelace',   'ada@example.com',   '123-45-6789'),
  (2, 'Grace Hopper',   'grace@example.com', '987-65-4321'),
  (3, 'Alan Turing',    'alan@example.com',  '555-12-3456')
ON CONFLICT DO NOTHING;
INSERT INTO public.orders (id, user_id, total, status) VALUES
  (40, 1, 19.99, 'paid'), (41, 2, 5.00, 'open'), (42, 3, 120.50, 'open')
ON CONFLICT DO NOTHING;
INSERT INTO public.payments (id, order_id, card_number, amount) VALUES
  (1, 40, '4111111111111111', 19.99), (2, 42, '5500005555555559', 120.50)
ON CONFLICT DO NOTHING;
