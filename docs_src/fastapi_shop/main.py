"""The shop's web app: `uvicorn main:app`. An order, its stock reservation and its
receipt job commit together, or not at all."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool

from tasks import DATABASE_URL, send_receipt, topia

pool = AsyncConnectionPool(DATABASE_URL, open=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    yield
    await pool.close()
    await topia.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/orders")
async def create_order(email: str, sku: str, quantity: int = 1) -> dict[str, int]:
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO orders (email, sku, quantity) VALUES (%s, %s, %s) RETURNING id",
            (email, sku, quantity),
        )
        (order_id,) = await cur.fetchone()
        job = await send_receipt.options(connection=conn).delay_async(
            f"customer:{email}", order_id=order_id, email=email
        )
        reserved = await conn.execute(
            "UPDATE stock SET available = available - %s WHERE sku = %s AND available >= %s",
            (quantity, sku, quantity),
        )
        if reserved.rowcount == 0:  # the exception rolls back the order and the job
            raise HTTPException(status_code=409, detail=f"not enough {sku} in stock")
    return {"order_id": order_id, "job_id": job.id}
