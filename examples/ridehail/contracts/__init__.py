"""What the ridehail services agree on: coordinates and the event payloads between them.

Each service owns its data and logic; this package holds only the shared vocabulary,
the way a schema registry would: value types and event contracts, no behaviour that
belongs to one service.
"""
