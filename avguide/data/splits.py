"""The standard train/val/test splits of VOCASET (FaceFormer), BIWI (CodeTalker) and the
synthetic benchmark (recorded in its manifest)."""

from __future__ import annotations

VOCASET_TRAIN = (
    "FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA",
)
VOCASET_VAL = ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
VOCASET_TEST = ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")

BIWI_TRAIN = ("F2", "F3", "F4", "M3", "M4", "M5")
BIWI_TEST_B = ("F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6")

SPLIT_NAMES = ("train", "val", "test", "test_a", "test_b")


def vocaset_split(subject: str, sentence: int) -> str | None:
    """Split of a VOCASET recording (FaceFormer protocol), or None if it is in no split.

    Train subjects x sentences 1-40; val and test subjects x sentences 21-40.
    """
    if subject in VOCASET_TRAIN and 1 <= sentence <= 40:
        return "train"
    if subject in VOCASET_VAL and 21 <= sentence <= 40:
        return "val"
    if subject in VOCASET_TEST and 21 <= sentence <= 40:
        return "test"
    return None


def biwi_split(subject: str, sentence: int) -> str | None:
    """Split of a BIWI recording (CodeTalker protocol), or None.

    Train subjects x e01-e32 train, e33-e36 val, e37-e40 test_a; other subjects x e37-e40 test_b.
    """
    if subject in BIWI_TRAIN:
        if 1 <= sentence <= 32:
            return "train"
        if 33 <= sentence <= 36:
            return "val"
        if 37 <= sentence <= 40:
            return "test_a"
    if subject in BIWI_TEST_B and 37 <= sentence <= 40:
        return "test_b"
    return None


def synthetic_subject_roles(n_subjects: int) -> list[str]:
    """Role of each synthetic subject, in order: the last ones are val then test.

    12 subjects -> 8 train, 2 val, 2 test (as VOCASET); in general
    n_val = n_test = max(1, round(n / 6)), the rest train (at least one).
    """
    if n_subjects < 3:
        raise ValueError(f"need at least 3 subjects for train/val/test, got {n_subjects}")
    n_held = max(1, round(n_subjects / 6))
    n_train = n_subjects - 2 * n_held
    return ["train"] * n_train + ["val"] * n_held + ["test"] * n_held


def heldout_sentences(n_sentences: int) -> range:
    """Sentence numbers (1-based) used for val/test subjects: the second half, 21-40 of 40."""
    return range(n_sentences // 2 + 1, n_sentences + 1)
