"""Enqueue in your own psycopg transaction: the job exists only if the transaction commits."""

import psycopg

from queuetopia import Queuetopia

topia = Queuetopia(scope="signup")


@topia.action("send_welcome")
def send_welcome(user_id: int) -> None: ...


def sign_up(conn: psycopg.Connection, email: str, *, accepted_terms: bool) -> int:
    with conn.transaction():
        row = conn.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (email,))
        user_id = row.fetchone()[0]
        send_welcome.options(connection=conn).delay(f"user:{user_id}", user_id=user_id)
        if not accepted_terms:
            raise ValueError("the terms were not accepted")  # rolls back the user and the job
    return user_id  # committed: the job is visible to workers, and they are woken now


topia.migrate()
with psycopg.connect(topia.dsn, autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, email text)")
    sign_up(conn, "ada@example.com", accepted_terms=True)
    try:
        sign_up(conn, "mallory@example.com", accepted_terms=False)
    except ValueError as exc:
        print(f"rolled back: {exc}")  # rolled back: the terms were not accepted
print([job.params for job in topia.list_jobs()])  # [{'user_id': 1}]
