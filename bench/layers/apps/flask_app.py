"""Flask 3.1.3 app for gunicorn's sync worker (WSGI): POST /invocations, GET /ping."""
from flask import Flask, Response, request

from work import work

app = Flask(__name__)
PING = '{"status":"Healthy"}'


@app.get("/ping")
def ping():
    return Response(PING, mimetype="application/json")


@app.post("/invocations")
def invocations():
    return Response(work(request.get_data()), mimetype="application/json")
