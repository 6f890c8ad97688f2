"""Certificate subjects as text, one canonical form for the ``--auth`` file and the TLS layer.

A principal may be reached by a client certificate (protocol §11.3): its
``client_cert_subject`` is compared with the subject of the certificate the TLS layer
verified. Both are written in the form of RFC 4514 (what ``openssl x509 -noout -subject
-nameopt RFC2253`` prints): the relative names from the most specific to the least, e.g.
``CN=edge.example.com,OU=clients,O=Example``, attribute types by their short names.

``canonical`` reads what an operator wrote (spaces around separators, long attribute names
such as ``commonName`` and either case of a type are fine) and ``from_certificate`` turns what
``SSLObject.getpeercert()`` reports into the same text, so the core compares plain strings.
Values are compared exactly, case included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["canonical", "from_certificate"]

#: Attribute types by any of their names (lowercase) -> the name the canonical form uses.
_TYPES: Final = {
    "cn": "CN",
    "commonname": "CN",
    "o": "O",
    "organizationname": "O",
    "ou": "OU",
    "organizationalunitname": "OU",
    "c": "C",
    "countryname": "C",
    "l": "L",
    "localityname": "L",
    "st": "ST",
    "stateorprovincename": "ST",
    "street": "STREET",
    "streetaddress": "STREET",
    "dc": "DC",
    "domaincomponent": "DC",
    "uid": "UID",
    "userid": "UID",
    "emailaddress": "emailAddress",
    "email": "emailAddress",
    "serialnumber": "serialNumber",
}
#: Characters escaped with a backslash anywhere in a value (RFC 4514 §2.4).
_SPECIAL: Final = frozenset('"+,;<>\\=')

Name = list[list[tuple[str, str]]]


def from_certificate(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """The canonical text of a subject as ``getpeercert()["subject"]`` gives it (relative
    names from the least specific, each a sequence of ``(type, value)`` pairs)."""
    return _render([[(_type(t), v) for t, v in rdn] for rdn in reversed(subject)])


def canonical(text: str) -> str:
    """The canonical text of a subject written as in RFC 4514; ``ValueError`` if it is not
    one (empty, a part without ``=``, an unfinished escape)."""
    return _render(_parse(text))


def _type(name: str) -> str:
    return _TYPES.get(name.strip().lower(), name.strip())


def _render(name: Name) -> str:
    return ",".join("+".join(f"{t}={_escape(v)}" for t, v in rdn) for rdn in name)


def _escape(value: str) -> str:
    out = []
    for i, char in enumerate(value):
        if char in _SPECIAL or (char == "#" and i == 0):
            out.append("\\" + char)
        elif char == " " and (i == 0 or i == len(value) - 1):
            out.append("\\ ")
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _parse(text: str) -> Name:
    """Split at unescaped ``,`` (relative names), ``+`` (their parts) and the first ``=``."""
    name: Name = []
    rdn: list[tuple[str, str]] = []
    kind: str | None = None
    chunk: list[str] = []
    kept = 0  # length of chunk up to its last escaped character: trailing spaces after it stay
    i = 0

    def finish_value() -> None:
        nonlocal kind, chunk, kept
        if kind is None:
            raise ValueError(f"a subject part has no '=': {''.join(chunk).strip()!r}")
        value = "".join(chunk)
        end = len(value.rstrip(" "))
        value = value[: max(end, kept)]
        if not kind or not value:
            raise ValueError(f"a subject part needs a type and a value: {text!r}")
        rdn.append((_type(kind), value))
        kind, chunk, kept = None, [], 0

    while i < len(text):
        char = text[i]
        if char == "\\":
            pair = text[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                if int(pair, 16) >= 0x80:
                    raise ValueError(f"write non-ASCII characters as they are: {text!r}")
                chunk.append(chr(int(pair, 16)))
                i += 3
            elif i + 1 < len(text):
                chunk.append(text[i + 1])
                i += 2
            else:
                raise ValueError(f"the subject ends in an unfinished escape: {text!r}")
            kept = len(chunk)
            continue
        if char == "=" and kind is None:
            kind = "".join(chunk).strip()
            chunk, kept = [], 0
        elif char in ",+":
            finish_value()
            if char == ",":
                name.append(rdn)
                rdn = []
        elif char == " " and not chunk:
            pass  # spaces before a type or a value
        else:
            chunk.append(char)
        i += 1
    finish_value()
    name.append(rdn)
    return name
