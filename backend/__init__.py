"""The reference backend: ingest workers, the event store, signed commands, the officer's desk.

A site runs it as it is (``gatelane-backend``): workers on MQTT v5 shared subscriptions store
every lane's events exactly once in PostgreSQL (or SQLite, the embedded default) and publish
each lane's watermark as the retained ack after the commit; the command service signs and
sends remote commands; the console is the officer's page in a browser.
"""
