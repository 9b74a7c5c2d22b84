"""Ask when unclear: ground an instruction in the scene, and act, or ask a clarifying question first.

`Clarifier` ties the parts together (clarifier.py): `parse` (instruction -> Referent), `ground` (Referent x scene
-> interpretations), a `Scorer` (confidence per interpretation), `ConformalCalibrator` (how many interpretations
to keep for a chosen miss rate), and `Conversation` / `question` / `read_answer` (asking and reading answers).
`OracleUser` answers questions from the simulator's ground truth, for benchmarks.
"""

from clearvla.clarify.ask import Act, Ask, Conversation, question, read_answer
from clearvla.clarify.calibrate import ConformalCalibrator, conformal_threshold, prediction_set
from clearvla.clarify.clarifier import Clarifier, Dialogue, Scorer, UniformScorer, decision_from_json
from clearvla.clarify.ground import Detector, Grounding, GroundTruthDetector, Interpretation, ground
from clearvla.clarify.oracle import OracleUser
from clearvla.clarify.parse import ParseError, Referent, parse

__all__ = [
    "Act",
    "Ask",
    "Clarifier",
    "ConformalCalibrator",
    "Conversation",
    "Detector",
    "Dialogue",
    "Grounding",
    "GroundTruthDetector",
    "Interpretation",
    "OracleUser",
    "ParseError",
    "Referent",
    "Scorer",
    "UniformScorer",
    "conformal_threshold",
    "decision_from_json",
    "ground",
    "parse",
    "prediction_set",
    "question",
    "read_answer",
]
