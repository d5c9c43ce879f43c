"""The `core.bus` port on NATS JetStream: one compacted stream, durable pull consumers, NATS users.

`connector.JetStreamConnector` is the entry point (the counterpart of
`transport.connector.BrokerConnector`); `identities` makes the users and their
permissions; `server` writes a nats-server config and finds the binary.
"""
