"""The live dashboard: Raft and Multi-Paxos side by side in a browser (`consensus-lab dashboard`).

``server.py`` serves the page and a WebSocket; ``view.py`` is what both backends show and how;
``sim_backend.py`` drives two
simulated clusters on a scaled clock; ``mqtt_backend.py`` watches real clusters on the message bus.
"""
