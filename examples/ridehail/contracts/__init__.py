"""What the ridehail services agree on: coordinates, the event payloads between them, and
the gateway's identity headers.

Each service owns its data and logic; this package holds the shared vocabulary, the way a
schema registry would: value types and event contracts, no behaviour that belongs to one
service. Beside it, a few helpers every service uses and the SDK is taking over:
``periodic.every``, ``identity``'s verified caller, ``started.Started``, ``sql.insert_new``.
"""
