"""The quick text tests (``trainlint.textscan``, and the tests written with it) answer what the regular
expressions they replace answered: a faster search must not change which files are parsed or judged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainlint.analysis import evaluation, transforms
from trainlint.rules import tl202_loss_clipped_not_gradients as tl202
from trainlint.textscan import search_words

ROOT = Path(__file__).resolve().parents[1]

# the regular expressions as they were (each searched the whole text)
OLD_CLIP = re.compile(r"\bclip\b|clip_?\s*\(")
OLD_CALLS_TRAINING = re.compile(r"\b(train\w*|fit\w*|\w*_train\w*|\w*_fit|run_epoch|\w*one_epoch)\s*\(", re.I)
OLD_AUGMENT = re.compile(
    r"\b(?:" + "|".join(sorted(transforms.TORCHVISION_RANDOM)) + r")\s*\(|albumentations|kornia\.augmentation|import kornia"
)
OLD_LOADS_WEIGHTS = re.compile(r"\.load_state_dict\(|torch\.load\(|load_from_checkpoint\(")

SNIPPETS = [
    "x.fIt(1)", "Trainfoo (", "a_fit(", "a_fit2(", "xrun_epoch(", "run_epoch(", "do_one_epoch (", "pretrained(",
    "pretrained = 1", "TRAIN_ALL()", "model.train", "ξtrain(", "ξ train(x)", "def fit\n(", "benefit(", "_train(",
    "T.RandomCrop(3)", "XRandomCrop(", "RandomCropX(", "RandomCrop", "import kornia", "kornia.augmentation",
    "from kornia import augmentation", "albumentations", "ColorJitter (", "ColorJitter", "v2.MixUp(", "AugMix()",
    "def __getitem__(self): random", "clip", "clipx", "xclip(", "xclip", "clip_ (", "myclip_(", "clip_grad_norm_(",
    "gradient_clip_val", "torch.clip(", "m.load_state_dict(", "torch.load (", "torch.load(", "load_from_checkpoint(",
    "",
]


def _texts():
    yield from SNIPPETS
    for p in sorted((ROOT / "trainlint").rglob("*.py")) + sorted((ROOT / "fixtures").rglob("*.py")):
        yield p.read_text(encoding="utf-8")
    # every snippet, also inside a file with text around it
    yield "\n".join(SNIPPETS)
    yield "# ünïcode\n" + "\n".join(SNIPPETS)


def _old_might_augment(text: str) -> bool:
    return bool(OLD_AUGMENT.search(text)) or ("__getitem__" in text and ("random" in text or "rand(" in text))


def test_the_quick_text_tests_answer_as_the_regular_expressions_did():
    checked = 0
    for text in _texts():
        assert bool(tl202._CLIP.search(text)) == bool(OLD_CLIP.search(text)), text[:200]
        assert (search_words(evaluation._CALLS_TRAINING, text, evaluation._CALLS_TRAINING_HINTS, ignore_case=True)
                == bool(OLD_CALLS_TRAINING.search(text))), text[:200]
        assert transforms.text_might_augment(text) == _old_might_augment(text), text[:200]
        assert evaluation._loads_weights(text) == bool(OLD_LOADS_WEIGHTS.search(text)), text[:200]
        checked += 1
    assert checked > 100
    # (and each answer is sometimes yes, sometimes no)
    for old in (OLD_CLIP, OLD_CALLS_TRAINING, OLD_AUGMENT, OLD_LOADS_WEIGHTS):
        answers = {bool(old.search(s)) for s in SNIPPETS}
        assert answers == {True, False}, old.pattern


def test_every_random_transform_holds_a_hint():
    """search_words finds a random transform through the hints: a name without one would never be found."""
    for name in transforms.TORCHVISION_RANDOM:
        assert any(h in name for h in transforms.RANDOM_HINTS), name
        assert transforms.text_might_augment(f"t = T.{name}(p=0.5)\n"), name
        assert not transforms.text_might_augment(f"t = T.My{name}(p=0.5)\n"), name


@pytest.mark.parametrize("text, found", [
    ("a = train_model(x)", True),
    ("a = pretrained_model(x)", False),  # ("train" inside the word, which starts otherwise)
    ("a = Pretrain(x)", False),
    ("a = self.TRAIN(x)", True),
    ("é = 1\na = TRAIN(x)", True),  # (not ASCII: the pattern searches the text itself)
    ("é = 1\na = pretrain(x)", False),
])
def test_search_words_matches_at_word_starts_only(text, found):
    pattern = re.compile(r"\btrain\w*\s*\(", re.I)
    assert search_words(pattern, text, ("train",), ignore_case=True) is found
    assert bool(pattern.search(text)) is found
