"""The shop's admin app, with the queuetopia dashboard at /queues behind the app's own
login: `uvicorn shop_admin:app`."""

import os
import secrets

from fastapi import FastAPI, Request

from queuetopia import Queuetopia
from queuetopia.dashboard import create_app

topia = Queuetopia(scope="shop")  # the database from $QUEUETOPIA_DSN


def staff_only(request: Request) -> bool:
    """Your application's own check: its session, or a header your SSO proxy sets."""
    token = request.headers.get("x-staff-token", "")
    return secrets.compare_digest(token, os.environ["STAFF_TOKEN"])


app = FastAPI()
app.mount("/queues", create_app(topia, auth=staff_only))


@app.get("/")
def home() -> dict[str, str]:
    return {"admin": "see /queues/"}
