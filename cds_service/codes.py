"""Constants more than one room needs: FHIR code system URLs and the R4 ``id`` pattern.

The lowest module of the package (it imports nothing of it), so ``fhir``, ``record`` and
``cards_render`` can share these without one room importing another (conventions: "a constant
two rooms need lives in the lower one or in a small shared module").
"""

from __future__ import annotations

__all__ = ["FHIR_ID", "LOINC", "SNOMED", "UCUM"]

# The R4 "id" datatype, as a regex fragment: what may follow "Patient/" or "Medication/" in a
# reference (FHIR R4 2.24.0.9 id: [A-Za-z0-9\-\.]{1,64}).
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
