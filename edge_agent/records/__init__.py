"""The lane's transaction log (alibi memory): append-only, hash-chained, every record signed.

- ``codec``: sans-I/O record and frame encoding (canonical JSON, SHA-256, Ed25519, CRC frames).
- ``store``: the append-only file in the state dir (fsync on append, torn tail quarantined).
- ``verify``: checks a log and names the first edited, deleted or reordered record.
- ``keys``: the lane's own record signing key; ``software``: software identification.
"""

from __future__ import annotations

LOG_NAME = "records.log"
KEY_NAME = "record-key.pem"
