"""Webhook secrets at rest: encrypted with a key from the settings, never stored in clear.

A webhook secret must be read back to sign each delivery, so it is encrypted (Fernet:
AES-128-CBC with HMAC-SHA256), not hashed. The key is derived from
``NOTIFICATIONS_SECRET_KEY``; production refuses the development default (see config).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, passphrase: str) -> None:
        key = base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken as exc:
            raise ValueError("the secret was sealed with another key") from exc
