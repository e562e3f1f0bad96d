"""The in-container session agent (``python3 -m agent``, ``berth-agent``).

It connects back to the Berth server over a WebSocket, says ``ready`` and
relays the conversation between the server and a runner: the Claude Agent
SDK runner, or a built-in runner that needs no network.
"""
