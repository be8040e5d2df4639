"""A real SMTP server for the Email stage's tests (stages/tests/email.rs).

aiosmtpd (PyPI) on loopback: STARTTLS required (with the certificate given),
AUTH PLAIN/LOGIN required after it and checked against one user. Every message
it accepts is written to MAILDIR as NNNN.eml (the message as sent) and
NNNN.rcpt (the envelope's recipients, one per line), each file renamed into
place once complete. Prints "ready" once it listens; runs until killed.

Usage: python smtp_server.py PORT MAILDIR CERT KEY USER PASSWORD
"""

import os
import pathlib
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Mailbox:
    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.count = 0
        self.lock = threading.Lock()

    def _write(self, name, data):
        partial = self.folder / f".{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, self.folder / name)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            number = self.count
        self._write(f"{number:04d}.rcpt", "\n".join(envelope.rcpt_tos).encode())
        self._write(f"{number:04d}.eml", envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


def main():
    port, maildir, cert, key, user, password = sys.argv[1:7]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Mailbox(maildir),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator(user, password),
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
