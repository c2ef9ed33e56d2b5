"""Multi-model endpoints (spec core §13): a front process on the port (front.py) and one model server process per
loaded model (servers.py), reached over Unix sockets (upstream.py); the bookkeeping in registry.py."""
