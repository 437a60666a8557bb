"""The message as it goes on the wire: read back by the standard library's parser, it has
the headers and the words it was given."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from notifications.domain.templates import EmailContent
from notifications.transports import SmtpSettings, build_email

SENT_AT = datetime(2026, 11, 24, 10, 15, 30, tzinfo=UTC)
MESSAGE_ID = "<6b1c9a52-8f0e-4d7a-9c51-2f1e0d3b4a77@notifications.pathways.example>"


def built(subject="Pathways: referral", body="Hello,\n\nA line.\n", *, sender=None, to=None):
    smtp = SmtpSettings(
        host="127.0.0.1", port=25, sender=sender or "Pathways <no-reply@pathways.example>"
    )
    outgoing = build_email(
        smtp,
        to=to or "alex.officer@probation.example",
        content=EmailContent(subject=subject, body=body),
        message_id=MESSAGE_ID,
        sent_at=SENT_AT,
    )
    return outgoing, email.message_from_bytes(outgoing.data, policy=email.policy.default)


def test_the_headers_and_the_envelope():
    outgoing, message = built()

    assert message["From"] == "Pathways <no-reply@pathways.example>"
    assert message["To"] == "alex.officer@probation.example"
    assert message["Subject"] == "Pathways: referral"
    assert message["Message-ID"].strip() == MESSAGE_ID  # folded, as the email package does
    assert message["Date"].datetime == SENT_AT
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.defects == []
    assert (outgoing.sender, outgoing.recipient, outgoing.utf8) == (
        "no-reply@pathways.example",
        "alex.officer@probation.example",
        False,
    )
    assert b"\r\n\r\n" in outgoing.data and b"\n" not in outgoing.data.replace(b"\r\n", b"")


def test_plain_ascii_goes_as_it_is():
    outgoing, message = built(body="Hello,\n\n.a line starting with a dot\n")

    assert message["Content-Transfer-Encoding"] == "7bit"
    assert message.get_content().replace("\r\n", "\n") == "Hello,\n\n.a line starting with a dot\n"
    assert outgoing.data.endswith(b"\r\n\r\nHello,\r\n\r\n.a line starting with a dot\r\n")


def test_non_ascii_and_long_lines_arrive_intact():
    body = "Name:                 Zoë Brontë\n" + "x" * 200 + "\nend"
    subject = "Duty to Refer: person at risk of homelessness in Ynys Môn"

    outgoing, message = built(subject=subject, body=body)

    assert outgoing.data.isascii()
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message["Subject"] == subject
    assert message.get_content().replace("\r\n", "\n") == body + "\n"
    assert all(len(line) <= 78 for line in outgoing.data.split(b"\r\n"))


def test_a_long_subject_is_folded_and_reads_back_whole():
    subject = "Pathways: " + " ".join(["accommodation"] * 12)

    outgoing, message = built(subject=subject)

    assert message["Subject"] == subject
    assert all(len(line) <= 78 for line in outgoing.data.split(b"\r\n"))


def test_a_sender_name_that_is_not_ascii_is_encoded():
    outgoing, message = built(sender="Pathways Cymru – Llwybrau <no-reply@pathways.example>")

    assert outgoing.data.isascii() and not outgoing.utf8
    assert message["From"] == "Pathways Cymru – Llwybrau <no-reply@pathways.example>"
    assert outgoing.sender == "no-reply@pathways.example"


def test_an_address_that_is_not_ascii_needs_smtputf8():
    outgoing, message = built(to="zoë@probation.example")

    assert outgoing.utf8
    assert outgoing.recipient == "zoë@probation.example"
    assert message["To"] == "zoë@probation.example"


@pytest.mark.parametrize("subject", ["two\r\nBcc: x@example.com", "line\nbreak", "cr\ronly"])
def test_a_line_break_in_a_header_is_refused(subject):
    with pytest.raises(ValueError, match="line break"):
        built(subject=subject)
