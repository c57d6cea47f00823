"""Where tests break the events path on purpose (installed by :mod:`corral.sdk.testing`).

The outbox relay and the consumer hold ``faults: Faults | None``; production leaves it
``None``, so a fault costs nothing there and no switch (environment variable, public
attribute) exists in production code paths. Crash tests need the process killed at an
exact point of the outbox path, and redelivery tests an acknowledgement that is lost:
neither can be provoked from outside without racing the code under test.
"""

from __future__ import annotations


class Faults:
    """Do-nothing hooks; :func:`corral.sdk.testing.inject_event_faults` overrides them."""

    def after_commit(self) -> None:
        """A transaction holding outbox rows committed (the relay is about to be woken)."""

    def after_publish(self) -> None:
        """The relay's batch was published and acknowledged, not yet marked sent."""

    def lose_ack(self) -> bool:
        """True: do not acknowledge this handled event, as if the ack were lost."""
        return False
