"""The same with asyncio: an AsyncConnection and the *_async enqueue calls."""

import asyncio

import psycopg

from queuetopia import Queuetopia

topia = Queuetopia(scope="signup")


@topia.action("send_welcome")
def send_welcome(user_id: int) -> None: ...


async def sign_up(conn: psycopg.AsyncConnection, email: str) -> int:
    async with conn.transaction():
        row = await conn.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (email,))
        (user_id,) = await row.fetchone()
        await send_welcome.options(connection=conn).delay_async(f"user:{user_id}", user_id=user_id)
    return user_id


async def main() -> None:
    async with await psycopg.AsyncConnection.connect(topia.dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, email text)")
        await sign_up(conn, "ada@example.com")
    # Without connection=, the job commits at once, on the topia's own async pool.
    await send_welcome.delay_async("user:1", user_id=1)
    await topia.aclose()  # close that pool in the event loop that opened it


topia.migrate()
asyncio.run(main())
print([job.params for job in topia.list_jobs(queue="user:1")])  # [{'user_id': 1}, {'user_id': 1}]
