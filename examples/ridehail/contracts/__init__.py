"""What the ridehail services agree on: coordinates, the event payloads between them, and
who a caller is (their id and one role).

Each service owns its data and logic; this package holds the shared vocabulary, the way a
schema registry would: value types and event contracts, no behaviour that belongs to one
service. Beside it, a few helpers every service uses: ``identity`` (the SDK's verified
caller narrowed to ridehail's roles), ``started.Started``, ``sql.insert_new``.
"""
