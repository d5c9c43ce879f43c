"""ZeroMQ sockets, the msgpack codec and the wire protocol; the broker client library."""
