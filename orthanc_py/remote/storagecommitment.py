"""Storage commitment on the wire (PS3.4 Annex J, Push Model): the N-ACTION an SCU sends to ask a
peer to commit to instances, and the N-EVENT-REPORT an SCP sends back with the result, each on an
association of its own, as Orthanc 1.10.1 does (DicomAssociation::RequestStorageCommitment and
ReportStorageCommitment). Blocking calls: core runs them in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..errors import ErrorCode, OrthancError
from ..model.modality import Modality
from .modalities import DicomScu

log = logging.getLogger("orthanc_py.scu")

SOP_CLASS = "1.2.840.10008.1.20.1"
"""Storage Commitment Push Model SOP Class."""
SOP_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Its well-known SOP instance."""
_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]  # as Orthanc proposes: explicit and implicit LE


def _sequence(pairs: Sequence[tuple[str, str]], reasons: Sequence[int] | None = None) -> list[Any]:
    """Items of Referenced SOP Class UID / Referenced SOP Instance UID (and Failure Reason)."""
    from pydicom.dataset import Dataset

    items = []
    for n, (sop_class, sop_instance) in enumerate(pairs):
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        if reasons is not None:
            item.FailureReason = int(reasons[n])
        items.append(item)
    return items


def _associate(scu: DicomScu, modality: Modality, local_aet: str, timeout: float | None, as_scp: bool) -> Any:
    """An association proposing only the storage commitment context; `as_scp`: we propose the
    SCP role (role selection, PS3.7 D.3.3.4), as Orthanc does to send a report."""
    from pynetdicom import AE, build_role

    ae = AE(ae_title=local_aet)
    t = timeout or modality.timeout or scu.timeout
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
    ae.add_requested_context(SOP_CLASS, _SYNTAXES)
    scu._probe(modality, t)
    roles: list[Any] = [build_role(SOP_CLASS, scu_role=False, scp_role=True)] if as_scp else []
    assoc = ae.associate(
        modality.host, modality.port, ae_title=modality.aet, ext_neg=roles, tls_args=scu.tls_args(modality)
    )
    if not assoc.is_established:
        # pynetdicom leaves the socket of a refused association open
        raw = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if raw is not None:
            raw.close()
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            # the peer answered but took no context (pynetdicom then aborts): Orthanc's words
            raise OrthancError(
                ErrorCode.NO_PRESENTATION_CONTEXT,
                f'Unable to negotiate a presentation context with AET "{modality.aet}"',
            )
        reason = "association rejected" if assoc.is_rejected else "cannot connect"
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f'DicomAssociation - connecting to AET "{modality.aet}": {reason}'
        )
    if not any(str(cx.abstract_syntax) == SOP_CLASS for cx in assoc.accepted_contexts):
        assoc.release()
        what = "N-EVENT-REPORT" if as_scp else "N-ACTION"
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"Storage commitment - Unable to send {what} request to AET: {modality.aet}"
        )
    return assoc


def _check_answer(assoc: Any, status: Any, what: str, modality: Modality) -> None:
    """Orthanc's checks of an N-ACTION / N-EVENT-REPORT response, with its words."""
    code = getattr(status, "Status", None) if status else None
    if code is None:
        if assoc.is_established:
            assoc.abort()
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL, f"Storage commitment - Unable to read {what} response from AET: {modality.aet}"
        )
    if code != 0x0000:
        assoc.release()
        raise OrthancError(
            ErrorCode.NETWORK_PROTOCOL,
            f"Storage commitment - The request cannot be handled by remote AET: {modality.aet}",
        )


def request_commitment(
    scu: DicomScu,
    modality: Modality,
    local_aet: str,
    timeout: float | None,
    transaction_uid: str,
    pairs: Sequence[tuple[str, str]],
) -> None:
    """N-ACTION "Request Storage Commitment" (action type 1) for (SOP class, SOP instance) pairs;
    OrthancError(NETWORK_PROTOCOL) when the peer cannot be reached or does not answer Success.
    The report comes later, on an association the peer opens to our SCP."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = _sequence(pairs)
    assoc = _associate(scu, modality, local_aet, timeout, as_scp=False)
    log.info(
        "storage commitment request to %s for %d instances (transaction %s)", modality.aet, len(pairs), transaction_uid
    )
    try:
        status, _reply = assoc.send_n_action(ds, 1, SOP_CLASS, SOP_INSTANCE)
    except Exception as exc:
        if assoc.is_established:
            assoc.abort()
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"Storage commitment - N-ACTION failed: {exc}") from exc
    _check_answer(assoc, status, "N-ACTION", modality)
    assoc.release()


def report_commitment(
    scu: DicomScu,
    modality: Modality,
    local_aet: str,
    timeout: float | None,
    transaction_uid: str,
    success: Sequence[tuple[str, str]],
    failures: Sequence[tuple[str, str, int]],
) -> None:
    """N-EVENT-REPORT of a storage commitment result (event type 1 when all succeeded, else 2
    with the Failed SOP Sequence); the Referenced SOP Sequence is always there, empty or not."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = _sequence(success)
    event_type = 1
    if failures:
        event_type = 2
        ds.FailedSOPSequence = _sequence([(c, i) for c, i, _r in failures], [r for _c, _i, r in failures])
    assoc = _associate(scu, modality, local_aet, timeout, as_scp=True)
    log.info(
        "storage commitment report to %s: %d successes, %d failures (transaction %s)",
        modality.aet,
        len(success),
        len(failures),
        transaction_uid,
    )
    try:
        status, _reply = assoc.send_n_event_report(ds, event_type, SOP_CLASS, SOP_INSTANCE)
    except Exception as exc:
        if assoc.is_established:
            assoc.abort()
        raise OrthancError(ErrorCode.NETWORK_PROTOCOL, f"Storage commitment - N-EVENT-REPORT failed: {exc}") from exc
    _check_answer(assoc, status, "N-EVENT-REPORT", modality)
    assoc.release()
