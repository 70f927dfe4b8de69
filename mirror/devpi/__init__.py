"""The devpi side: run devpi-server, talk to it, and make it offer (and prove it holds)
the files the mirror publishes."""
