"""The attribute vocabulary of the workcell: colours, part and target kinds, size words, directions, spatial
relations, and their surface forms, split into what the train suite uses and what only held-out suites use.

A clarifier parses instructions with these tables: `SURFACE_FORMS[attribute][canonical]` lists every phrase
(train and held-out) that means `canonical`; `canonical(phrase)` inverts it. Left and right are as seen in the
third-person camera image, which looks at the robot from the front: image-left is world -y (`LEFT_AXIS`).
"""

from __future__ import annotations

import numpy as np

# RGB in [0, 1]; the tables are fixed so that a colour name always means the same pixels.
PART_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.08),
    "green": (0.10, 0.62, 0.18),
    "blue": (0.10, 0.28, 0.85),
    "yellow": (0.95, 0.80, 0.08),
    # held-out (semantic suite only)
    "purple": (0.52, 0.18, 0.72),
    "orange": (1.00, 0.48, 0.02),
    "white": (0.92, 0.92, 0.90),
    "cyan": (0.05, 0.80, 0.85),
}
TARGET_COLOURS: dict[str, tuple[float, float, float]] = {
    "grey": (0.45, 0.47, 0.50),
    "black": (0.10, 0.10, 0.11),
    "brown": (0.45, 0.30, 0.16),
}
DISTRACTOR_COLOURS: dict[str, tuple[float, float, float]] = {
    "silver": (0.70, 0.72, 0.75),
    "dark green": (0.12, 0.25, 0.15),
    "tan": (0.76, 0.64, 0.45),
    "magenta": (0.80, 0.10, 0.55),
}
TRAIN_PART_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
HELDOUT_PART_COLOURS: tuple[str, ...] = ("purple", "orange", "white", "cyan")

PART_KINDS: tuple[str, ...] = ("block", "bolt", "nut", "plate")
PHYSICAL_PART_KINDS: tuple[str, ...] = ("bar", "cylinder", "disc")  # unseen shapes, physical suite only
TARGET_KINDS: tuple[str, ...] = ("bin", "tray", "fixture")
DISTRACTOR_KINDS: tuple[str, ...] = ("ball", "spool", "pipe")
SIZES: tuple[str, ...] = ("small", "medium", "large")
DIRECTIONS: tuple[str, ...] = ("left", "right")
RELATIONS: tuple[str, ...] = ("left of", "right of")

# World-frame unit vector of "left" as seen in the third-person image.
LEFT_AXIS = np.array([0.0, -1.0, 0.0])
DIRECTION_AXIS: dict[str, np.ndarray] = {"left": LEFT_AXIS, "right": -LEFT_AXIS}

# canonical value -> phrases. The first phrase is the plain train word; TRAIN_FORMS says how many the train suite
# uses, the rest are held-out synonyms for the semantic suite.
SURFACE_FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "kind": {
        "block": ("block", "cube", "brick"),
        "bolt": ("bolt", "screw", "threaded rod"),
        "nut": ("nut", "ring", "hexagon"),
        "plate": ("plate", "panel", "slab"),
        "bar": ("bar",),
        "cylinder": ("cylinder",),
        "disc": ("disc",),
        "bin": ("bin", "box", "container"),
        "tray": ("tray", "pan", "tote"),
        "fixture": ("fixture", "jig", "holder"),
    },
    "colour": {
        "red": ("red", "crimson", "scarlet"),
        "green": ("green", "emerald"),
        "blue": ("blue", "navy", "azure"),
        "yellow": ("yellow", "golden"),
        "purple": ("purple", "violet"),
        "orange": ("orange",),
        "white": ("white",),
        "cyan": ("cyan", "turquoise"),
        "grey": ("grey", "gray"),
        "black": ("black",),
        "brown": ("brown",),
    },
    "size": {
        "small": ("small", "little", "tiny"),
        "medium": ("medium", "medium-sized", "mid-sized"),
        "large": ("large", "big", "huge"),
    },
    "direction": {
        "left": ("left", "leftward", "to the left side"),
        "right": ("right", "rightward", "to the right side"),
    },
    "relation": {
        "left of": ("left of", "to the left of", "on the left of"),
        "right of": ("right of", "to the right of", "on the right of"),
    },
}
TRAIN_FORMS = 1  # the train suite only ever uses SURFACE_FORMS[...][...][0]


def train_form(attribute: str, value: str) -> str:
    """The plain word the train suite uses for `value`."""
    return SURFACE_FORMS[attribute][value][0]


def heldout_forms(attribute: str, value: str) -> tuple[str, ...]:
    """Synonyms of `value` never seen in training (may be empty)."""
    return SURFACE_FORMS[attribute][value][TRAIN_FORMS:]


def canonical(phrase: str) -> list[tuple[str, str]]:
    """All (attribute, canonical value) pairs a phrase can mean, e.g. "cube" -> [("kind", "block")]."""
    phrase = phrase.strip().lower()
    return [(attr, value) for attr, table in SURFACE_FORMS.items() for value, forms in table.items() if phrase in forms]


# Task verbs. Each template has {obj} and, where the task needs it, {target} / {direction}.
TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick": ("pick up the {obj}", "lift the {obj}"),
    "place": ("put the {obj} in the {target}", "place the {obj} in the {target}"),
    "stack": ("stack the {obj} on the {target}", "put the {obj} on top of the {target}"),
    "push": ("push the {obj} to the {direction}", "push the {obj} {direction}"),
}
HELDOUT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pick": ("grab the {obj} and raise it", "take the {obj} off the table", "hoist the {obj}"),
    "place": ("drop the {obj} into the {target}", "move the {obj} into the {target}", "load the {obj} in the {target}"),
    "stack": ("set the {obj} onto the {target}", "place the {obj} atop the {target}", "pile the {obj} on the {target}"),
    "push": ("slide the {obj} {direction}", "nudge the {obj} {direction}", "shove the {obj} {direction}"),
}
