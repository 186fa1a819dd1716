"""The DIMSE services the SCP provides (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET): each parses
its request, calls core and answers a status (dimse/status.py). Called by pynetdicom in the
association's thread (dimse/server.py registers them); work for the event loop hops to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.pdu_primitives import A_RELEASE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from ..core import files as core_files
from ..core import findspec, ingest, worklists
from ..core import modalities as core_modalities
from ..core.context import ServerContext
from ..core.ingest import Origin, StoreStatus
from ..core.query import FindRequest, find_answers_blocking, find_public_ids_blocking, matched_files_blocking
from ..model import maintags as mt
from ..model.charsets import ENCODINGS, python_codec
from ..model.enums import ResourceType
from ..model.filemeta import file_meta_bytes
from ..model.lookup import parse_constraint, vr_of
from ..model.parsing import element_text
from ..model.wire import for_peer, stored_dataset, wire_syntax
from . import status

QUERY_RETRIEVE_LEVEL = mt.tag(0x0008, 0x0052)
RETRIEVE_AE_TITLE = mt.tag(0x0008, 0x0054)
_NOT_KEYS = frozenset({QUERY_RETRIEVE_LEVEL, mt.SPECIFIC_CHARACTER_SET})

log = logging.getLogger("orthanc_py.dimse")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

_QR_LEVEL_NAMES = {
    "PATIENT": ResourceType.PATIENT,
    "PATIENTS": ResourceType.PATIENT,
    "STUDY": ResourceType.STUDY,
    "STUDIES": ResourceType.STUDY,
    "SERIES": ResourceType.SERIES,
    "IMAGE": ResourceType.INSTANCE,
    "IMAGES": ResourceType.INSTANCE,
    "INSTANCE": ResourceType.INSTANCE,
    "INSTANCES": ResourceType.INSTANCE,
}


def qr_level(text: str) -> ResourceType:
    """The level a QueryRetrieveLevel names, with the spellings Orthanc accepts (KeyError else)."""
    return _QR_LEVEL_NAMES[text.strip().upper()]


def _called_aet(assoc: Any) -> str:
    """The AET the requestor called (Orthanc records it as CalledAET, whatever its own AET)."""
    primitive = getattr(assoc.requestor, "primitive", None)
    called = getattr(primitive, "called_ae_title", None)
    return str(called if called else assoc.acceptor.ae_title).strip()


class DicomHandlers:
    """The service handlers of the SCP, for one server context."""

    def __init__(self, ctx: ServerContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop

    def allowed(self, event: Any, permission: str) -> bool:
        requestor = event.assoc.requestor
        ok = self.ctx.modalities.is_allowed(
            self.ctx.settings, permission, str(requestor.ae_title).strip(), str(requestor.address)
        )
        if not ok:
            # Orthanc aborts the association of a request it does not allow
            log.warning("%s refused for AET %s (not allowed by DicomModalities)", permission, requestor.ae_title)
            event.assoc.abort()
        return ok

    def on_acse_recv(self, event: Any) -> None:
        """A peer asks to release its association: first the Lua callbacks of the instances it
        stored run (bounded; core/lua LuaScripting.settle_stored_events)."""
        lua = self.ctx.lua
        if lua is not None and isinstance(event.primitive, A_RELEASE) and event.primitive.result is None:
            requestor = event.assoc.requestor
            lua.settle_stored_events(str(requestor.address), str(requestor.ae_title).strip())

    def on_echo(self, event: Any) -> int:
        return status.SUCCESS if self.allowed(event, "AllowEcho") else status.REFUSED_NOT_AUTHORIZED

    def on_store(self, event: Any) -> int:
        if not self.allowed(event, "AllowStore"):
            return status.REFUSED_NOT_AUTHORIZED
        assoc = event.assoc
        origin = Origin(
            "DicomProtocol",
            remote_ip=str(assoc.requestor.address),
            remote_aet=str(assoc.requestor.ae_title).strip(),
            called_aet=_called_aet(assoc),
        )
        try:
            req = event.request
            meta = file_meta_bytes(
                str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID), str(event.context.transfer_syntax)
            )
            data = meta + req.DataSet.getvalue()
            stored = ingest.store_blocking(self.ctx, data, origin, self.loop)
            originator = req.MoveOriginatorApplicationEntityTitle
            if originator and req.MoveOriginatorMessageID is not None and stored.status is not StoreStatus.FILTERED_OUT:
                # a sub-operation of a C-MOVE: counted for the C-MOVE we sent, if it is one of ours
                self.ctx.retrievals.received(
                    str(originator).strip(), int(req.MoveOriginatorMessageID), stored.ids.instance
                )
        except Exception as exc:
            log.warning("C-STORE from %s refused: %s", origin.remote_aet, exc)
            return status.store_failure(exc)
        return status.SUCCESS

    def _parse_query(self, identifier: Dataset) -> tuple[str, FindRequest, list[int]]:
        """QueryRetrieveLevel, the find request and the requested keys of an identifier
        (KeyError/ValueError when it is not a valid query). As in Orthanc, "*" asks for the
        tag to be present (PS3.4 would make it universal): C-FIND and /tools/find agree."""
        level_text = str(identifier.get("QueryRetrieveLevel", "")).strip()
        level = qr_level(level_text)
        req = FindRequest(level=level)
        rules = findspec.c_find_rules(self.ctx.settings.case_sensitive_pn)
        requested: list[int] = []
        for tag in list(identifier.keys()):
            t = int(tag)
            if t in _NOT_KEYS or (t >> 16) == 0x0002 or (t & 0xFFFF) == 0:
                continue
            requested.append(t)
            elem = identifier[t]
            if elem.VR == "SQ":
                continue
            text = element_text(elem.value)
            if text:
                # a wildcard where PS3.4 C.2.2.2.4 allows none fails the C-FIND (as Orthanc)
                findspec.add_constraint(req, t, text, rules)
        return level_text, req, requested

    def _retrieve_request(self, identifier: Dataset) -> FindRequest | None:
        """What a C-MOVE or C-GET asks for (Orthanc's LookupIdentifiers): the level's unique key
        matched exactly, a list of values allowed; at the study level the AccessionNumber when it
        has a value, else the StudyInstanceUID. Other keys are ignored. Without
        QueryRetrieveLevel, the lowest level whose key has a value. None: nothing to retrieve."""
        keys = {
            ResourceType.PATIENT: (mt.PATIENT_ID,),
            ResourceType.STUDY: (mt.ACCESSION_NUMBER, mt.STUDY_INSTANCE_UID),
            ResourceType.SERIES: (mt.SERIES_INSTANCE_UID,),
            ResourceType.INSTANCE: (mt.SOP_INSTANCE_UID,),
        }

        def value(tag: int) -> str:
            elem = identifier.get(tag)
            return (element_text(elem.value) or "").strip() if elem is not None and elem.VR != "SQ" else ""

        level_text = str(identifier.get("QueryRetrieveLevel", "") or "").strip()
        if level_text:
            level = qr_level(level_text)
        else:
            found = [lv for lv in reversed(ResourceType) if any(value(t) for t in keys[lv])]
            if not found:
                return None
            level = found[0]
        tags = keys[level]
        if level is ResourceType.STUDY and mt.ACCESSION_NUMBER in identifier and value(mt.ACCESSION_NUMBER):
            tag = mt.ACCESSION_NUMBER
        else:
            tag = tags[-1]
        text = value(tag)
        if not text:
            return None
        values = [v.strip() for v in text.split("\\") if v.strip()]
        constraint = parse_constraint(tag, "\\".join(values), True, True) if values else None
        if constraint is None:
            return None
        req = FindRequest(level=level)
        req.constraints.append(constraint)
        return req

    def _instance_files(self, req: FindRequest) -> list[core_files.InstanceFile]:
        """The files of every instance under the matched resources, from the index: nothing is
        read from the files until each one is sent."""
        return matched_files_blocking(self.ctx, req, meta=True)

    def _datasets(self, accepted_contexts: list[Any], files: list[core_files.InstanceFile]) -> Iterator[Dataset]:
        """The files as datasets, in order, read and parsed by a helper thread a few files ahead
        of the one being sent (a large study never sits in memory whole), as ingest accepted
        them (`model.wire`, the same reading as the C-STORE SCU): sent as stored when the
        association accepted their transfer syntax, else transcoded to one it has (Explicit VR
        Little Endian first), as Orthanc does."""
        accepted: dict[str, list[str]] = {}
        for cx in accepted_contexts:
            accepted.setdefault(str(cx.abstract_syntax), []).extend(str(ts) for ts in cx.transfer_syntax)

        def load(f: core_files.InstanceFile) -> Dataset:
            ds = stored_dataset(core_files.read(self.ctx, f))
            syntaxes = accepted.get(str(ds.get("SOPClassUID", "") or f.sop_class), [])
            if syntaxes and not for_peer(ds, syntaxes):
                log.warning("cannot transcode %s to any of %s", wire_syntax(ds), syntaxes)
            return ds

        return core_modalities.read_ahead(load, files)

    def _sub_operations(
        self,
        event: Any,
        files: list[core_files.InstanceFile],
        accepted: Callable[[], list[Any]] | None = None,
        store_assoc: Callable[[], Any] | None = None,
    ) -> Iterator[Any]:
        """The C-STORE sub-operations of a C-MOVE or C-GET: their count, then one dataset each.
        `accepted`: the contexts of the association they go on (C-GET: the requestor's own), known
        once pynetdicom has opened it, that is after the count; `store_assoc` that association
        (C-MOVE). While they run, the DIMSE messages of both associations are written by this
        thread (`DirectSender`): pynetdicom counts, answers and cancels as before."""
        yield len(files)
        contexts = accepted() if accepted is not None else event.assoc.accepted_contexts
        senders = [core_modalities.DirectSender(event.assoc)]
        moving = store_assoc() if store_assoc is not None else None
        if moving is not None:  # C-MOVE: its C-STOREs name the requestor as their Move Originator
            senders.append(core_modalities.DirectSender(moving, str(event.assoc.requestor.ae_title).strip()))
        for sender in senders:
            sender.install()
        try:
            for ds in self._datasets(list(contexts), files):
                if event.is_cancelled:
                    yield status.CANCEL, None
                    return
                yield status.PENDING, ds
        finally:
            for sender in senders:
                sender.remove()

    def _matched_public_ids(self, req: FindRequest) -> list[str]:
        return find_public_ids_blocking(self.ctx, req)

    def on_move(self, event: Any) -> Iterator[Any]:
        """C-MOVE SCP: the destination must be a known modality (by AET). SynchronousCMove (the
        default): the instances are sent before the C-MOVE answers. Off: a DicomModalityStore
        job sends them on an association of its own and the C-MOVE answers at once. Nothing
        matched: 0xC000 and no job, as Orthanc."""
        if not self.allowed(event, "AllowMove"):
            yield None, None
            return
        destination = str(event.move_destination).strip()
        known = self.ctx.modalities.by_aet(destination)
        if not known:
            log.warning("C-MOVE to unknown destination %s", destination)
            yield None, None
            return
        name, modality = known[0]
        try:
            req = self._retrieve_request(event.identifier)
            error = None
        except Exception as exc:
            log.warning("C-MOVE with an invalid identifier: %s", exc)
            req, error = None, exc
        if self.ctx.settings.synchronous_cmove:
            yield from self._move_now(event, modality, req, error)
            return
        public_ids = self._matched_public_ids(req) if req is not None and error is None else []
        # a failure is reported as a sub-operation's, on an association pynetdicom opens first
        yield modality.host, modality.port, {"contexts": [_verification_context()], "ae_title": modality.aet}
        if error is not None:
            yield 1
            yield status.MOVE_IDENTIFIER_MISMATCH, None
            return
        if not public_ids:
            yield from _nothing_to_move()
            return
        originator = str(event.assoc.requestor.ae_title).strip()
        message_id = int(getattr(event.request, "MessageID", 0) or 0)
        future = asyncio.run_coroutine_threadsafe(
            core_modalities.submit_move_job(self.ctx, self.ctx.scu, name, modality, public_ids, originator, message_id),
            self.loop,
        )
        future.result()
        yield 0

    def _move_now(self, event: Any, modality: Any, req: FindRequest | None, error: Exception | None) -> Iterator[Any]:
        """SynchronousCMove: pynetdicom runs the C-STORE sub-operations on an association of its
        own before the C-MOVE answers. Each class is proposed in its stored syntax and, apart,
        uncompressed, so that a file the destination cannot take as stored is transcoded."""
        from pynetdicom.presentation import build_context

        files = self._instance_files(req) if req is not None and error is None else []
        contexts = [build_context(Verification)]
        stored: dict[str, set[str]] = {}
        for f in files:
            sop, ts = f.sop_class, f.transfer_syntax
            if sop:
                stored.setdefault(sop, set()).update({ts} if ts and ts not in (EXPLICIT_LE, IMPLICIT_LE) else ())
        for sop, syntaxes in sorted(stored.items()):
            contexts.extend(build_context(sop, [ts]) for ts in sorted(syntaxes))
            contexts.append(build_context(sop, [EXPLICIT_LE, IMPLICIT_LE]))
        if len(contexts) > 128:  # the most a requestor may propose (PS3.8 9.3.2.2)
            contexts = contexts[:128]
        store_assoc: list[Any] = []

        def established(e: Any) -> None:
            store_assoc.append(e.assoc)
            core_modalities.hold_reactor(e.assoc)  # its responses are read by DirectSender

        handlers = [(evt.EVT_ESTABLISHED, established)]
        yield (
            modality.host,
            modality.port,
            {"contexts": contexts, "ae_title": modality.aet, "evt_handlers": handlers},
        )
        if error is not None:
            yield 1
            yield status.MOVE_IDENTIFIER_MISMATCH, None
            return
        if not files:
            yield from _nothing_to_move()
            return
        yield from self._sub_operations(
            event,
            files,
            lambda: store_assoc[0].accepted_contexts if store_assoc else [],
            lambda: store_assoc[0] if store_assoc else None,
        )

    def on_get(self, event: Any) -> Iterator[Any]:
        """C-GET SCP: the instances go back on the requestor's own association."""
        # pynetdicom wants the number of sub-operations first (0 would mean Success): a refusal
        # is announced as one sub-operation, then its status
        if not self.allowed(event, "AllowGet"):
            yield 1
            yield status.REFUSED_NOT_AUTHORIZED, None
            return
        try:
            req = self._retrieve_request(event.identifier)
            files = self._instance_files(req) if req is not None else []
        except Exception as exc:
            log.warning("C-GET with an invalid identifier: %s", exc)
            yield 1
            yield status.MOVE_IDENTIFIER_MISMATCH, None
            return
        yield from self._sub_operations(event, files)

    @staticmethod
    def _find_origin(event: Any) -> dict[str, str]:
        """The origin IncomingFindRequestFilter receives (Orthanc's FormatOrigin)."""
        requestor = event.assoc.requestor
        return {
            "CalledAet": _called_aet(event.assoc),
            "Manufacturer": "Generic",
            "RemoteAet": str(requestor.ae_title).strip(),
            "RemoteIp": str(requestor.address),
        }

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        """C-FIND SCP through the core find engine (PS3.4 C.2.2.2 matching), answering the
        requested keys plus RetrieveAETitle, in the DefaultEncoding in force (characters it
        cannot encode are dropped, as Orthanc does)."""
        if str(event.context.abstract_syntax) == worklists.WORKLIST_FIND:
            yield from self._on_worklist_find(event)
            return
        if not self.allowed(event, "AllowFind"):
            yield status.REFUSED_NOT_AUTHORIZED, None
            return
        identifier = event.identifier
        s = self.ctx.settings
        try:
            lua = self.ctx.lua
            if lua is not None and "IncomingFindRequestFilter" in lua.events.defined:
                identifier = lua.filter_identifier("IncomingFindRequestFilter", identifier, self._find_origin(event))
            level_text, req, requested = self._parse_query(identifier)
        except Exception as exc:
            log.warning("C-FIND with an invalid identifier: %s", exc)
            yield status.FIND_UNABLE_TO_PROCESS, None
            return
        level = req.level
        limit = s.limit_find_instances if level is ResourceType.INSTANCE else s.limit_find_results
        req.limit = limit + 1 if limit else 0  # one more tells whether the answers were cut

        try:
            matches = find_answers_blocking(self.ctx, req, requested)
        except Exception as exc:
            log.warning("C-FIND failed: %s", exc)
            yield status.FIND_UNABLE_TO_PROCESS, None
            return
        truncated = bool(limit) and len(matches) > limit
        if truncated:
            matches = matches[:limit]
        charset = ENCODINGS.get(self.ctx.default_encoding) or "ISO_IR 100"
        codec = python_codec(charset)
        for values in matches:
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            ds = Dataset()
            ds.SpecificCharacterSet = charset
            ds.QueryRetrieveLevel = level_text
            for t in requested:
                asked = identifier[t].VR
                if asked == "SQ":
                    # an empty sequence, as Orthanc 1.10.1 answers for a resource without it
                    ds.add_new(t, "SQ", [])
                    continue
                value = values.get(t)
                if value is None or value == "":
                    # echoed with the VR it was asked with (Orthanc: UN for a private tag)
                    ds.add_new(t, "UN" if (t >> 16) & 1 else asked or vr_of(t), None)
                    continue
                vr = asked if asked not in ("UN", None) else vr_of(t)
                if vr in ("UN", "SQ"):
                    vr = "LO"
                if vr in _TEXT_VRS:
                    # encoded here: what the character set cannot hold is dropped, as Orthanc does
                    ds.add_new(t, vr, value.encode(codec, "ignore"))
                    continue
                ds.add_new(t, vr, _typed(vr, value))
            ds.add_new(RETRIEVE_AE_TITLE, "AE", s.dicom_aet)
            yield status.PENDING, ds
        if truncated:
            # Orthanc ends a query cut at LimitFindResults/LimitFindInstances with "matching
            # terminated due to cancel" rather than success
            yield status.CANCEL, None

    def _on_worklist_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        """C-FIND on the Modality Worklist model: the worklists of the folder (core.worklists);
        answers cut at LimitAnswers end with "matching terminated due to cancel", as Orthanc."""
        if not self.allowed(event, "AllowFindWorklist"):
            yield status.REFUSED_NOT_AUTHORIZED, None
            return
        try:
            found = worklists.serve(self.ctx, event.identifier, self._find_origin(event))
        except Exception as exc:
            log.warning("worklist C-FIND failed: %s", exc)
            yield status.FIND_UNABLE_TO_PROCESS, None
            return
        for answer in found.answers:
            if event.is_cancelled:
                yield status.CANCEL, None
                return
            yield status.PENDING, answer
        if not found.complete:
            yield status.CANCEL, None


def _verification_context() -> Any:
    """A fresh context (pynetdicom numbers the contexts it is given)."""
    from pynetdicom.presentation import build_context

    return build_context(Verification)


def _nothing_to_move() -> Iterator[Any]:
    """Orthanc fails a C-MOVE that matches nothing with 0xC000 (unable to process). pynetdicom
    sends a failure status only as a sub-operation's, so one is announced."""
    yield 1
    yield status.MOVE_UNABLE_TO_PROCESS, None


_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
_INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})


def _typed(vr: str, value: str) -> Any:
    """A value as pydicom wants it for the VR (numbers for binary VRs, a list for several)."""
    if vr in _INT_VRS or vr in ("FL", "FD"):
        parts = [p for p in value.split("\\") if p.strip()]
        try:
            nums = [int(p) if vr in _INT_VRS else float(p) for p in parts]
        except ValueError:
            return None
        return nums[0] if len(nums) == 1 else nums
    return value
