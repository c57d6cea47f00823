"""Password hashing with Argon2id (argon2-cffi), and the rules a password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 128
"""Long enough for any passphrase, short enough that hashing cannot be used as a DoS."""


class WeakPassword(ValueError):
    pass


def check_password_rules(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")
    if password.strip() != password or not password.strip():
        raise WeakPassword("a password cannot start or end with spaces")


class Passwords:
    """Hash and verify; login for an unknown user still costs one verification, so the
    answer time does not tell which emails have accounts."""

    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19_456, parallelism: int = 1):
        # OWASP's minimum for Argon2id: m=19 MiB, t=2, p=1. Tests and the simulator may
        # lower it through settings; production keeps at least this.
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._dummy = self._hasher.hash("not a real password, only for timing")

    def hash(self, password: str) -> str:
        check_password_rules(password)
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and (
                stored_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
