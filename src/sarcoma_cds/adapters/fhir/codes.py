"""Code tables of the mCODE reader. Each entry names the standard it comes from.

Only codes listed here are used; any other code is reported as a gap, never guessed.
* ICD-O-3 (WHO International Classification of Diseases for Oncology, 3rd ed. / 3.2):
  morphology ``NNNN/B`` -> contract histology; topography ``Cnn.n`` -> primary site.
* SNOMED CT: body structures, AJCC 8 TNM qualifier values (as used in mCODE STU4
  examples), histologic grade (mCODE HistologicGradeVS), condition status trend
  (mCODE ConditionStatusTrendVS), disorders for comorbidities.
* LOINC: observation codes (TNM, tumour size, ECOG, genomics) and answer lists.
* HGNC: gene ids.
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
EXT_RELATED_CONDITION_ABSENT = MCODE_SD + "mcode-related-condition-absent"

# ICD-O-3 morphology (first four digits; behaviour checked separately) -> histology.
ICDO3_HISTOLOGY: dict[str, str] = {
    "8936": "gist",  # Gastrointestinal stromal tumour (/1 ICD-O-3, /3 ICD-O-3.2)
    "8850": "liposarcoma",
    "8851": "liposarcoma_well_differentiated",
    "8852": "liposarcoma_myxoid",
    "8853": "liposarcoma_myxoid",  # round cell liposarcoma: high-grade myxoid liposarcoma (WHO 2013+)
    "8854": "liposarcoma_pleomorphic",
    "8858": "liposarcoma_dedifferentiated",
    "8890": "leiomyosarcoma",
    "8891": "leiomyosarcoma",  # epithelioid leiomyosarcoma
    "8896": "leiomyosarcoma",  # myxoid leiomyosarcoma
    "8802": "undifferentiated_pleomorphic_sarcoma",
    "8830": "undifferentiated_pleomorphic_sarcoma",  # malignant fibrous histiocytoma (older term)
    "9040": "synovial_sarcoma", "9041": "synovial_sarcoma", "9042": "synovial_sarcoma",
    "9043": "synovial_sarcoma",
    "8811": "myxofibrosarcoma",
    "9540": "malignant_peripheral_nerve_sheath_tumour",
    "9120": "angiosarcoma",
    "8800": "other_soft_tissue_sarcoma", "8801": "other_soft_tissue_sarcoma",
    "8804": "other_soft_tissue_sarcoma", "8810": "other_soft_tissue_sarcoma",
    "9044": "other_soft_tissue_sarcoma", "9581": "other_soft_tissue_sarcoma",
    "8900": "rhabdomyosarcoma", "8901": "rhabdomyosarcoma", "8910": "rhabdomyosarcoma",
    "8912": "rhabdomyosarcoma", "8920": "rhabdomyosarcoma",
    "8821": "desmoid_tumour",
    "9140": "kaposi_sarcoma",
    "8832": "dermatofibrosarcoma_protuberans",
    "9260": "ewing_sarcoma",
    "9180": "osteosarcoma",
}
# Morphologies whose behaviour code may be /1 (borderline) and still be the contract histology.
ICDO3_NON_MALIGNANT_OK = {"8936", "8821", "8832"}

# SNOMED CT morphologic abnormalities (verified concept ids only).
SNOMED_HISTOLOGY: dict[str, str] = {
    "1163022006": "leiomyosarcoma",  # Leiomyosarcoma (morphologic abnormality)
    "1162815008": "liposarcoma",  # Liposarcoma (morphologic abnormality)
}

# SNOMED CT body structures -> primary site.
SNOMED_SITE: dict[str, str] = {
    "53120007": "upper_extremity",  # Upper limb structure
    "61685007": "lower_extremity",  # Lower limb structure
    "68367000": "lower_extremity",  # Thigh structure
    "22943007": "trunk",  # Trunk structure
    "82849001": "retroperitoneum",  # Retroperitoneal structure
    "113345001": "intra_abdominal",  # Abdominal structure
    "69695003": "stomach",  # Stomach structure
    "38848004": "duodenum",  # Duodenal structure
    "30315005": "small_intestine",  # Small intestinal structure
    "21306003": "small_intestine",  # Jejunal structure
    "34516001": "small_intestine",  # Ileal structure
    "71854001": "colon",  # Colon structure
    "34402009": "rectum",  # Rectum structure
    "32849002": "oesophagus",  # Esophageal structure
    "774007": "head_neck",  # Structure of head and/or neck
    "4147007": "other_gi",  # Mesentery structure
    "27398004": "other_gi",  # Omentum structure
}
# ICD-O-3 topography (prefix match, longest first) -> primary site.
ICDO3_SITE: dict[str, str] = {
    "C49.0": "head_neck", "C49.1": "upper_extremity", "C49.2": "lower_extremity",
    "C49.3": "trunk", "C49.6": "trunk", "C48.0": "retroperitoneum", "C49.4": "intra_abdominal",
    "C16": "stomach", "C17.0": "duodenum", "C17.1": "small_intestine", "C17.2": "small_intestine",
    "C18": "colon", "C19": "rectum", "C20": "rectum", "C15": "oesophagus",
    "C48.1": "other_gi", "C48.2": "other_gi",
}

# Metastatic sites (secondary cancer condition body site).
SNOMED_MET_SITE: dict[str, str] = {
    "39607008": "lung",  # Lung structure
    "10200004": "liver",  # Liver structure
    "272673000": "bone",  # Bone structure
    "59441001": "lymph_node",  # Structure of lymph node
    "15425007": "peritoneum",  # Peritoneum structure
    "12738006": "other",  # Brain structure
}

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
SNOMED_GRADE: dict[str, str] = {"1155708003": "1", "1286893008": "2", "1155707008": "3",
                                 # AJCC G grades (SNOMED CT findings; AJCC 8 soft tissue grades by FNCLCC)
                                 "54102005": "1", "1663004": "2", "61026006": "3", "12619005": "X"}
# LOINC LL529-9 ECOG answers.
LOINC_ECOG: dict[str, int] = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4}
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
HGNC_GENES: dict[str, str] = {
    "HGNC:6342": "KIT", "HGNC:8803": "PDGFRA", "HGNC:1097": "BRAF", "HGNC:8031": "NTRK1",
    "HGNC:8032": "NTRK2", "HGNC:8033": "NTRK3", "HGNC:7765": "NF1", "HGNC:10680": "SDHA",
    "HGNC:10681": "SDHB", "HGNC:10682": "SDHC", "HGNC:10683": "SDHD", "HGNC:7989": "NRAS",
}
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
