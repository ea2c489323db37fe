"""What the sidecar answered, as plain Python values."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union, cast

from .v1 import sessionbridge_pb2 as pb


def _name(enum: Any, value: int, prefix: str) -> str:
    name: str = enum.Name(value)
    return name[len(prefix) :] if name.startswith(prefix) else name


class Rejection(NamedTuple):
    """A piece of evidence or input the sidecar did not use, and why."""

    kind: str
    """`OWN_COOKIE`, `HANDOFF_TOKEN`, `CLIENT_IP`, ... (EvidenceKind without prefix)."""
    reason: str
    """`MALFORMED`, `REPLAYED`, ... (RejectionReason without prefix)."""
    field: str
    """For a request field, its path (`context.client_ip`); else empty."""
    detail: str
    """A short explanation; never the evidence itself."""

    @classmethod
    def from_message(cls, message: pb.RejectedEvidence) -> Rejection:
        return cls(
            kind=_name(pb.EvidenceKind, message.kind, "EVIDENCE_KIND_"),
            reason=_name(pb.RejectionReason, message.reason, "REJECTION_REASON_"),
            field=message.field,
            detail=message.detail,
        )


class Consent(NamedTuple):
    """The consent in force: each signal `GRANTED`, `DENIED` or `UNSPECIFIED`."""

    analytics_storage: str
    ad_storage: str
    ad_user_data: str
    ad_personalization: str

    @classmethod
    def from_message(cls, message: pb.Consent) -> Consent:
        def state(value: int) -> str:
            return _name(pb.ConsentState, value, "CONSENT_STATE_")

        return cls(
            analytics_storage=state(message.analytics_storage),
            ad_storage=state(message.ad_storage),
            ad_user_data=state(message.ad_user_data),
            ad_personalization=state(message.ad_personalization),
        )


@dataclasses.dataclass(frozen=True)
class Result:
    """The visitor's identity and session, as ResolveSession decided them."""

    client_id: str
    """The long-lived visitor id (GA4 format, usable as a Measurement Protocol client_id)."""
    session_id: int
    """GA4 session id: unix seconds at the start of the session."""
    session_number: int
    user_id: str
    """The backend's user id linked to this client; empty if none."""
    first_seen_unix_seconds: int
    last_seen_unix_seconds: int
    method: str
    """How it was decided: `COOKIE`, `HANDOFF_TOKEN`, `NEW`, ... (ResolutionMethod without prefix)."""
    confidence: float
    new_session: bool
    new_client: bool
    persisted: bool
    rejected: Tuple[Rejection, ...]
    consent: Consent
    clean_url: str
    """The request URL without hand-off parameters, when it carried some."""
    response: pb.ResolveSessionResponse = dataclasses.field(repr=False)
    """The raw answer."""

    @classmethod
    def from_response(cls, response: pb.ResolveSessionResponse) -> Result:
        identity = response.identity
        return cls(
            client_id=identity.client_id,
            session_id=identity.session_id,
            session_number=identity.session_number,
            user_id=identity.user_id,
            first_seen_unix_seconds=identity.first_seen_unix_seconds,
            last_seen_unix_seconds=identity.last_seen_unix_seconds,
            method=_name(pb.ResolutionMethod, response.method, "RESOLUTION_METHOD_"),
            confidence=response.confidence,
            new_session=response.new_session,
            new_client=response.new_client,
            persisted=response.persisted,
            rejected=tuple(Rejection.from_message(r) for r in response.rejected),
            consent=Consent.from_message(response.consent),
            clean_url=response.clean_url,
            response=response,
        )

    def as_dict(self) -> Dict[str, Any]:
        """The fields as JSON-ready values (without the raw response)."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "response":
                continue
            value = getattr(self, f.name)
            if f.name == "rejected":
                value = [r._asdict() for r in value]
            elif f.name == "consent":
                value = value._asdict()
            out[f.name] = value
        return out


@dataclasses.dataclass(frozen=True)
class Handoff:
    """What `handoff()` answered: where to send the visitor."""

    url: str
    """The destination decorated with the hand-off token; the plain
    destination when the sidecar failed."""
    token: str
    """The hand-off token (e.g. for Stripe's `client_reference_id`); empty
    when the sidecar failed."""
    response: Optional[pb.RecordHandoffResponse] = dataclasses.field(default=None, repr=False)
    """The raw answer; None when the sidecar failed."""
    error: Optional[BaseException] = dataclasses.field(default=None, repr=False)
    """Why the sidecar failed, when it did."""

    @property
    def ok(self) -> bool:
        """Whether the sidecar recorded the hand-off."""
        return self.response is not None

    def __str__(self) -> str:
        return self.url


def _consent_state(value: Any) -> pb.ConsentState:
    if value is None or value == "":
        return pb.CONSENT_STATE_UNSPECIFIED
    if value is True:
        return pb.CONSENT_STATE_GRANTED
    if value is False:
        return pb.CONSENT_STATE_DENIED
    if isinstance(value, int):
        return cast(pb.ConsentState, value)
    text = str(value).strip().upper()
    text = text[len("CONSENT_STATE_") :] if text.startswith("CONSENT_STATE_") else text
    if text == "GRANTED":
        return pb.CONSENT_STATE_GRANTED
    if text == "DENIED":
        return pb.CONSENT_STATE_DENIED
    if text == "UNSPECIFIED":
        return pb.CONSENT_STATE_UNSPECIFIED
    raise ValueError(f"consent: {value!r} is not granted, denied or unspecified")


ConsentValue = Union[None, str, bool, Mapping[str, Any], pb.Consent]
"""What a `consent` callback may return: a Consent message; a mapping of
signal name (`analytics_storage`, `ad_storage`, `ad_user_data`,
`ad_personalization`) to "granted" / "denied" / True / False / None; or one
of those values for all four signals."""

_SIGNALS = ("analytics_storage", "ad_storage", "ad_user_data", "ad_personalization")


def to_consent(value: ConsentValue) -> Optional[pb.Consent]:
    """A consent callback's answer as the message the sidecar takes."""
    if value is None:
        return None
    if isinstance(value, pb.Consent):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - set(_SIGNALS)
        if unknown:
            raise ValueError(f"consent: unknown signals {sorted(unknown)}")
        return pb.Consent(**{name: _consent_state(value.get(name)) for name in _SIGNALS})
    state = _consent_state(value)
    return pb.Consent(**{name: state for name in _SIGNALS})
