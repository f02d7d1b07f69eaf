"""The differential as a laboratory information system takes it: FHIR R4 or HL7 v2.5 ORU^R01.

Each class is one result under its LOINC code, in percent of white cells (nucleated red
cells per 100 white cells), with the number of cells counted beside it.  A sample that is
signed off (nothing changed since) gives a final result; any other a preliminary one.

``LOINC_CODES`` is the one code table.  Source: LOINC (Regenstrief Institute, loinc.org,
version 2.80), the "…/100 leukocytes in Blood" terms without a method: a count made on
images by a model and checked by a reviewer is neither an analyser's automated count nor
a classic manual count (a lab that maps it to method-specific codes changes this table).
Platelets are not sent: LOINC has no "platelets per 100 leukocytes" term, and a platelet
count belongs to the haematology analyser; the printed report keeps them.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from .atomic import atomic_write
from .sample_result import PERCENT, ResultRow, SampleResult


@dataclass(frozen=True)
class LoincCode:
    code: str
    display: str  # LOINC's long common name
    unit: str  # UCUM


LOINC_URL = "http://loinc.org"
UCUM_URL = "http://unitsofmeasure.org"
LOINC_CODES: dict[str, LoincCode] = {
    "NEUTROPHIL": LoincCode("26511-6", "Neutrophils/100 leukocytes in Blood", "%"),
    "LYMPHOCYTE": LoincCode("26478-8", "Lymphocytes/100 leukocytes in Blood", "%"),
    "MONOCYTE": LoincCode("26485-3", "Monocytes/100 leukocytes in Blood", "%"),
    "EOSINOPHIL": LoincCode("26450-7", "Eosinophils/100 leukocytes in Blood", "%"),
    "BASOPHIL": LoincCode("30180-4", "Basophils/100 leukocytes in Blood", "%"),
    "IG": LoincCode("38518-7", "Immature granulocytes/100 leukocytes in Blood", "%"),
    "ERYTHROBLAST": LoincCode("19048-8", "Nucleated erythrocytes/100 leukocytes [Ratio] in Blood", "/100{WBCs}"),
}
# Classes of the differential a LIS message leaves out, and why (the command line says so).
NOT_SENT = {"PLATELET": "platelets are not sent: LOINC has no platelets per 100 leukocytes term"}
REPORT_TITLE = "White blood cell differential (digital morphology)"


class NothingToSend(ValueError):
    """The sample has no white cell counted: no percentage exists to send."""


def lis_rows(result: SampleResult) -> list[ResultRow]:
    """The rows a LIS message carries (every class with a LOINC code), in the report's order."""
    if not result.differential.wbc:
        raise NothingToSend(f"no white cell counted in {result.name or 'the session'}: there is no differential to send")
    return [row for row in result.rows if row.group in LOINC_CODES]


def _instant(text: str) -> str:
    """An ISO time with its zone (FHIR instant); now when ``text`` is empty."""
    moment = datetime.fromisoformat(text) if text else datetime.now(UTC)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _quantity(value: float, unit: str) -> dict:
    return {"value": round(value, 2), "unit": unit, "system": UCUM_URL, "code": unit}


# -- FHIR R4


def fhir_bundle(result: SampleResult) -> dict:
    """A FHIR R4 Bundle (type collection): a DiagnosticReport, one Observation per class,
    the reviewer (Practitioner) as performer and the sample (Specimen)."""
    status = result.status
    ids = {name: f"urn:uuid:{uuid.uuid4()}" for name in ("report", "reviewer", "specimen")}
    issued = _instant(result.sign_off.at if result.sign_off else "")
    effective = _instant(result.analysed_to)
    performer = [{"reference": ids["reviewer"], "display": result.responsible}] if result.responsible else []
    category = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]
    entries, refs = [], []
    for row in lis_rows(result):
        code = LOINC_CODES[row.group]
        observation: dict = {
            "resourceType": "Observation",
            "status": status,
            "category": category,
            "code": {"coding": [{"system": LOINC_URL, "code": code.code, "display": code.display}], "text": row.name},
            "effectiveDateTime": effective,
            "issued": issued,
            "performer": performer,
            "specimen": {"reference": ids["specimen"]},
            "valueQuantity": _quantity(row.value, code.unit),
            "component": [{"code": {"text": "White blood cells counted of this class"}, "valueInteger": row.count}],
        }
        if row.reference is not None:
            observation["referenceRange"] = [
                {"low": _quantity(row.reference.low, "%"), "high": _quantity(row.reference.high, "%")}
            ]
        if row.flag:
            observation["interpretation"] = [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": row.flag}]}
            ]
        url = f"urn:uuid:{uuid.uuid4()}"
        refs.append({"reference": url, "display": row.name})
        entries.append({"fullUrl": url, "resource": observation})
    report = {
        "resourceType": "DiagnosticReport",
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM"}]}],
        "code": {"text": REPORT_TITLE},
        "effectiveDateTime": effective,
        "issued": issued,
        "performer": performer,
        "specimen": [{"reference": ids["specimen"]}],
        "result": refs,
    }
    if result.sample_id:
        report["identifier"] = [{"value": result.sample_id}]
    if result.comments:
        report["conclusion"] = result.comments
    specimen: dict = {"resourceType": "Specimen"}
    if result.sample_id:
        specimen["identifier"] = [{"value": result.sample_id}]
    head = [{"fullUrl": ids["report"], "resource": report}, {"fullUrl": ids["specimen"], "resource": specimen}]
    if result.responsible:
        practitioner = {"resourceType": "Practitioner", "name": [{"text": result.responsible}]}
        head.append({"fullUrl": ids["reviewer"], "resource": practitioner})
    return {"resourceType": "Bundle", "type": "collection", "timestamp": _instant(""), "entry": head + entries}


# -- HL7 v2.5


def _escape(text: str) -> str:
    """HL7 v2 escapes for the delimiters ``|^~\\&`` and line breaks in free text."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("~", "\\R\\").replace("&", "\\T\\")
    return out.replace("\r\n", "\\.br\\").replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def _ts(text: str) -> str:
    """An HL7 TS (YYYYMMDDHHMMSS+ZZZZ); now when ``text`` is empty."""
    moment = datetime.fromisoformat(text) if text else datetime.now(UTC)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).strftime("%Y%m%d%H%M%S%z")


def hl7_message(result: SampleResult, control_id: str | None = None) -> str:
    """An HL7 v2.5 ORU^R01 message (segments separated by carriage returns): MSH, OBR, the
    morphology comments as NTE, and one OBX per class, each followed by an NTE with its count."""
    status = "F" if result.final else "P"
    lab = _escape(result.lab)
    observed = _ts(result.analysed_to)
    changed = _ts(result.sign_off.at if result.sign_off else "")
    observer = f"^{_escape(result.responsible)}" if result.responsible else ""
    sample = _escape(result.sample_id)
    control = control_id or uuid.uuid4().hex[:20]
    segments = [
        f"MSH|^~\\&|YAWBCC|{lab}|LIS|{lab}|{_ts('')}||ORU^R01^ORU_R01|{control}|P|2.5",
        f"OBR|1||{sample}|^{REPORT_TITLE}|||{observed}|||||||||||||||{changed}||HM|{status}",
    ]
    if result.comments:
        segments.append(f"NTE|1|L|{_escape(result.comments)}")
    for i, row in enumerate(lis_rows(result), start=1):
        code = LOINC_CODES[row.group]
        ref = f"{row.reference.low:g}-{row.reference.high:g}" if row.reference is not None else ""
        unit = f"{code.unit}^{'percent' if row.unit == PERCENT else 'per 100 white blood cells'}^UCUM"
        segments.append(
            f"OBX|{i}|NM|{code.code}^{code.display}^LN||{row.value_text}|{unit}|{ref}|{row.flag}|||{status}"
            f"|||{observed}||{observer}"
        )
        segments.append(f"NTE|{i}|L|{row.count} cells counted")
    return "\r".join(segments) + "\r"


def write_fhir(result: SampleResult, path: str | os.PathLike) -> None:
    """Write the FHIR bundle as JSON, atomically."""
    bundle = fhir_bundle(result)
    with atomic_write(path) as fh:
        json.dump(bundle, fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")


def write_hl7(result: SampleResult, path: str | os.PathLike) -> None:
    """Write the HL7 message, atomically (carriage returns kept as they are)."""
    message = hl7_message(result)
    with atomic_write(path, newline="") as fh:
        fh.write(message)
