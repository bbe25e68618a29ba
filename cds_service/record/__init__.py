"""The normalized, typed patient picture of one call (``PatientRecord`` and its values), built
from the FHIR data by ``cds_service.record.build.build_record`` (not imported here: ``fhir``
reads ``record.units``, and ``build`` reads ``fhir``); derived quantities in ``statin``, ``ivig``,
``dosing``, ``series``."""

from cds_service.record.model import CkValue, LabValue, Medication, MedicationUse, PatientRecord

__all__ = ["CkValue", "LabValue", "Medication", "MedicationUse", "PatientRecord"]
