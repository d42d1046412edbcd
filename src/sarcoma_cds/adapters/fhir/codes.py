"""Observation codes and answer values of the mCODE reader. Each entry names its standard.

The site, histology, drug and gene tables are data: FHIR ConceptMaps with per-entry provenance
in ``terminology/`` (read through ``terms``; rebuilt and checked by ``scripts/terminology.py``).
What stays here are the observation codes that say which fact an Observation carries (LOINC
and their SNOMED CT equivalents) and the small answer lists of those observations:
* SNOMED CT: AJCC 8 TNM qualifier values (as used in mCODE STU4 examples), histologic grade
  (mCODE HistologicGradeVS and the AJCC G1-G3/GX findings), condition status trend (mCODE
  ConditionStatusTrendVS), disorders for comorbidities.
* LOINC: observation codes (TNM, tumour size, ECOG, genomics) and answer lists.
Only codes listed are used; any other code is reported as a gap, never guessed.
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
HGNC = "http://www.genenames.org"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
UCUM = "http://unitsofmeasure.org"
AJCC = "http://cancerstaging.org"

MCODE_SD = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
EXT_HISTOLOGY = MCODE_SD + "mcode-histology-morphology-behavior"
EXT_RELATED_CONDITION = MCODE_SD + "mcode-related-condition"

# Observation codes.
TNM_N_CODES = {(LOINC, "21906-3"): "clinical", (LOINC, "21900-6"): "pathologic",
               (SNOMED, "399534004"): "clinical", (SNOMED, "371494008"): "pathologic"}
TNM_M_CODES = {(LOINC, "21907-1"): "clinical", (LOINC, "21901-4"): "pathologic",
               (SNOMED, "399387003"): "clinical", (SNOMED, "371497001"): "pathologic"}
TNM_T_CODES = {(LOINC, "21905-5"): "clinical", (LOINC, "21899-0"): "pathologic",
               (SNOMED, "399504009"): "clinical", (SNOMED, "384625004"): "pathologic"}
STAGE_GROUP_CODES = {(LOINC, "21908-9"): "clinical", (LOINC, "21902-2"): "pathologic",
                     (SNOMED, "399537006"): "clinical", (SNOMED, "399588009"): "pathologic"}
TUMOR_SIZE_CODES = {(LOINC, "21889-1"), (LOINC, "33728-7")}
TUMOR_SIZE_MAX_DIM = (LOINC, "33728-7")
TUMOR_SIZE_OTHER_DIMS = {(LOINC, "33729-5"), (LOINC, "33730-3")}
GRADE_CODES = {(NCIT, "C18000"), (LOINC, "21858-6"), (LOINC, "33732-9"),
               (SNOMED, "371469007")}  # Histologic grade (observable entity)
HISTOLOGY_OBS_CODES = {(LOINC, "31206-6")}
ECOG_CODES = {(LOINC, "89247-1")}
DISEASE_STATUS_CODES = {(LOINC, "97509-4")}
COMORBIDITY_CODES = {(SNOMED, "398192003")}
VARIANT_CODES = {(LOINC, "69548-6")}

# AJCC 8 N / M values as SNOMED CT qualifier values (mCODE STU4 examples).
SNOMED_TNM_VALUE: dict[str, str] = {
    "1229967007": "cN0", "1229947003": "pN0", "1229901006": "cM0", "1229903009": "cM1",
}
# mCODE HistologicGradeVS -> FNCLCC grade (three-tier: low = 1, intermediate = 2, high = 3).
SNOMED_GRADE: dict[str, str] = {
    "1155708003": "1",
    "1286893008": "2",
    "1155707008": "3",
    # AJCC G grades (SNOMED CT findings; AJCC 8 soft tissue grades by FNCLCC)
    "54102005": "1",
    "1663004": "2",
    "61026006": "3",
    "12619005": "X",
}
# LOINC LL529-9 ECOG answers.
LOINC_ECOG: dict[str, int] = {
    "LA9622-7": 0,
    "LA9623-5": 1,
    "LA9624-3": 2,
    "LA9625-0": 3,
    "LA9626-8": 4,
}
# mCODE ConditionStatusTrendVS.
SNOMED_DISEASE_STATUS: dict[str, str | None] = {
    "271299001": "progressive",  # Patient's condition worsened
    "268910001": None,  # improved: not primary/recurrent/progressive
    "359746009": None,  # stable
    "709137006": None,  # undetermined
}
# Genetic variant assessment answers (LOINC LL1971-2).
PRESENT, ABSENT = "LA9633-4", "LA9634-2"
GENE_STUDIED = (LOINC, "48018-6")
VARIANT_TEXT_COMPONENTS = {(LOINC, "81252-9"), (LOINC, "48004-6"), (LOINC, "48005-3"),
                           (LOINC, "81290-9"), (LOINC, "47999-8"), (LOINC, "48019-4")}
SDH_GENES = {"SDHA", "SDHB", "SDHC", "SDHD"}
NTRK_GENES = {"NTRK1", "NTRK2", "NTRK3"}
# Protein-coding exon spans (codons) of the canonical transcripts KIT NM_000222 and
# PDGFRA NM_006206, for the exons the guideline distinguishes.
KIT_EXON_CODONS = {"exon_9": (449, 514), "exon_11": (550, 592), "exon_13": (627, 664),
                   "exon_17": (788, 828)}
PDGFRA_EXON_CODONS = {"exon_12": (552, 596), "exon_14": (639, 667), "exon_18": (814, 854)}

# Comorbidities: disorder codes -> contract comorbidity.
SNOMED_COMORBIDITY = {"84114007": "heart_failure", "42343007": "heart_failure",
                      "85232009": "heart_failure", "88805009": "heart_failure"}
ICD10_COMORBIDITY_PREFIX = {"I50": "heart_failure"}
