"""FastAPI: enqueue inside the request's transaction, on an async connection, with a
worker running beside the app. The job exists only if the order row commits.

    uvicorn examples.fastapi_app:app          # serve it
    python examples/fastapi_app.py            # a self-check with FastAPI's TestClient
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, HTTPException

from queuetopia import JobState, Queuetopia

topia = Queuetopia(scope=os.environ.get("EXAMPLE_SCOPE", "shop"))
receipts: list[str] = []


@topia.action("send_receipt")
def send_receipt(order_id: int, email: str) -> None:
    receipts.append(f"receipt to {email}")


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    topia.migrate()
    with psycopg.connect(topia.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS example_orders (id serial PRIMARY KEY, email text NOT NULL)"
        )
    with topia.worker(concurrency=4):  # or run `queuetopia worker` processes instead
        yield
    await topia.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/orders")
async def create_order(email: str, fail: bool = False) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(topia.dsn) as conn:
        cur = await conn.execute(
            "INSERT INTO example_orders (email) VALUES (%s) RETURNING id", (email,)
        )
        row = await cur.fetchone()
        assert row is not None
        job = await send_receipt.options(connection=conn).delay_async(
            f"customer:{email}", order_id=row[0], email=email
        )
        if fail:  # the order rolls back, and the job with it
            await conn.rollback()
            raise HTTPException(status_code=500, detail="payment failed")
        await conn.commit()
    return {"order_id": row[0], "job_id": job.id}


def main() -> None:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # starlette's note about httpx
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        ok = client.post("/orders", params={"email": "ada@example.com"}).json()
        failed = client.post("/orders", params={"email": "alan@example.com", "fail": True})
        deadline = time.monotonic() + 20
        while topia.get_job(ok["job_id"]).state != JobState.DONE:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the receipt job did not run"
            time.sleep(0.05)
    print("\n".join(receipts))
    print(
        f"failed order: HTTP {failed.status_code}, jobs for it: "
        f"{len(topia.list_jobs(queue='customer:alan@example.com'))}"
    )


if __name__ == "__main__":
    main()
