CREATE TABLE orders (
    id       serial PRIMARY KEY,
    email    text    NOT NULL,
    sku      text    NOT NULL,
    quantity integer NOT NULL
);
CREATE TABLE stock (sku text PRIMARY KEY, available integer NOT NULL);
INSERT INTO stock VALUES ('tea', 3);
