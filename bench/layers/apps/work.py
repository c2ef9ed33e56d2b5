"""The one handler every layer runs: parse the JSON body, double the list, dump JSON (peers.md §3 method).

A JSON object {"sleep_s": S} instead of a list makes the handler block for S seconds first (time.sleep,
like a long predict_fn) and answer []; run.py uses it only for the /ping isolation probe, never in the
throughput cells. This file is also pasted verbatim into smserve's code/inference.py, so the work is
byte-for-byte the same code under every server.
"""
import json
import time


def work(body):
    data = json.loads(body)
    if isinstance(data, dict):
        time.sleep(float(data.get("sleep_s", 0)))
        data = []
    return json.dumps([x * 2 for x in data])
