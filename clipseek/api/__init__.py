"""The API: talking to a running engine (client.py, over HTTP or gRPC) and the `clipseek` command (cli.py)."""
