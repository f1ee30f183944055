"""English sentence pairs for paraphrase-MiniLM-L3-v2: paraphrases, unrelated pairs, and the data files.

PAIRS holds 60 paraphrase pairs (120 sentences) written for this benchmark, on
varied topics. The first CALIBRATION_PAIRS pairs are calibration data, the rest
are test data, never mixed. Unrelated pairs are formed from the test pairs:
sentence a of pair i with sentence b of pair i + UNRELATED_SHIFT (mod n), whose
topic differs. Files written by :func:`write_data`:

    calibration.npz   input_ids, attention_mask: int32 (72, SEQ_LEN), the calibration sentences
    test.npz          input_ids, attention_mask: int32 (48, SEQ_LEN); rows 2i and 2i+1 are test pair i
    test_pairs.json   the test sentences, their paraphrase and unrelated pairs (row numbers)

The .npz files hold only the model's two inputs, so edgequant takes them as DATA as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SEQ_LEN = 32
CALIBRATION_PAIRS = 36
UNRELATED_SHIFT = 7

PAIRS: list[tuple[str, str]] = [
    ("A man is playing a guitar on the stage.", "Someone performs guitar music in front of an audience."),
    ("The cat is sleeping on the warm windowsill.", "A cat naps in the sun by the window."),
    ("It will rain heavily in the city tomorrow.", "Tomorrow the town can expect a lot of rain."),
    ("She bought fresh vegetables at the market.", "At the market, she picked up some fresh produce."),
    ("The train to Boston was delayed by an hour.", "Our train to Boston left sixty minutes late."),
    ("He is learning to speak Japanese.", "He is studying the Japanese language."),
    ("The children are building a sandcastle on the beach.", "Kids are making a castle out of sand by the sea."),
    ("Please turn off the lights when you leave.", "Switch the lights off on your way out, please."),
    ("The company reported record profits this quarter.", "This quarter the firm earned more than ever before."),
    ("My phone battery dies very quickly.", "The battery in my phone drains fast."),
    ("The doctor told him to get more sleep.", "His physician advised him to rest more at night."),
    ("A dog is chasing a ball across the park.", "In the park, a dog runs after a ball."),
    ("The museum is closed on Mondays.", "You cannot visit the museum on a Monday."),
    ("She finished the marathon in under four hours.", "Her marathon time was less than four hours."),
    ("The recipe calls for two cups of flour.", "You need two cups of flour for this recipe."),
    ("The software update fixed the login problem.", "After the update, the sign-in bug was gone."),
    ("They are planning a trip to Italy next summer.", "Next summer they intend to travel to Italy."),
    ("The river flooded the nearby fields.", "Water from the river covered the fields close by."),
    ("He forgot his umbrella at the office.", "He left his umbrella behind at work."),
    ("The students passed the final exam.", "All the pupils succeeded in their last test."),
    ("A woman is slicing onions in the kitchen.", "In the kitchen, a woman cuts up some onions."),
    ("The price of coffee has gone up again.", "Coffee is getting more expensive once more."),
    ("The airplane landed safely despite the storm.", "Even in the storm, the plane touched down without harm."),
    ("Our team won the championship last night.", "Last night we took the championship title."),
    ("The library lends e-books for free.", "You can borrow digital books from the library at no cost."),
    ("The baby started crying in the middle of the night.", "In the night the infant woke up and cried."),
    ("He repaired the bicycle's flat tire.", "He fixed the puncture on his bike."),
    ("The meeting has been moved to Thursday.", "We rescheduled the meeting for Thursday."),
    ("Scientists discovered a new species of frog.", "Researchers found a frog species nobody knew about."),
    ("The new bridge will open to traffic in May.", "Cars can use the new bridge starting in May."),
    ("She is reading a novel under a tree.", "A woman reads a book in the shade of a tree."),
    ("The restaurant was too noisy to talk.", "It was so loud in the restaurant that we could not chat."),
    ("The volcano erupted early this morning.", "This morning the volcano began to erupt."),
    ("Two men are playing chess in the park.", "A pair of men play a game of chess outdoors."),
    ("The store offers a discount to students.", "Students get a reduced price at this shop."),
    ("Wear a helmet when you ride a motorcycle.", "Always put on a helmet before riding a motorbike."),
    # Test pairs from here on (CALIBRATION_PAIRS = 36).
    ("The kids are playing soccer in the rain.", "Children kick a football around while it rains."),
    ("He drinks a cup of tea every morning.", "Each morning he has a cup of tea."),
    ("The hotel room had a view of the ocean.", "From our hotel room we could see the sea."),
    ("The government announced new tax rules.", "New taxation regulations were announced by the state."),
    ("A bird is building a nest in the tree.", "In the tree, a bird is making its nest."),
    ("The concert was cancelled because of the snow.", "Heavy snow forced them to call off the concert."),
    ("She paints landscapes in her free time.", "In her spare time she paints pictures of scenery."),
    ("The car would not start this morning.", "This morning the engine refused to turn over."),
    ("The garden is full of blooming roses.", "Roses are flowering all over the garden."),
    ("He lost his wallet on the bus.", "His wallet went missing while he rode the bus."),
    ("The internet connection keeps dropping.", "Our network connection goes down again and again."),
    ("A chef is cooking pasta in a large pot.", "The cook boils noodles in a big pot."),
    ("The population of the city has doubled.", "The number of people living in the city is twice what it was."),
    ("The teacher explained the math problem again.", "Once more, the teacher went through the math question."),
    ("A horse is running through the field.", "A horse gallops across the meadow."),
    ("The patient recovered quickly after surgery.", "After the operation, the patient got better fast."),
    ("We need to buy milk and bread.", "We have to get bread and milk from the shop."),
    ("The spacecraft reached orbit around Mars.", "The probe entered an orbit around the red planet."),
    ("He apologized for being late to dinner.", "He said sorry for arriving late for dinner."),
    ("The printer is out of paper.", "There is no more paper in the printer."),
    ("The old castle attracts many tourists.", "Lots of visitors come to see the ancient castle."),
    ("The baby elephant followed its mother.", "The young elephant walked behind its mom."),
    ("The workers went on strike for higher wages.", "Employees stopped working to demand better pay."),
    ("The moon was bright and full last night.", "Last night there was a brilliant full moon."),
]


def calibration_sentences() -> list[str]:
    return [s for pair in PAIRS[:CALIBRATION_PAIRS] for s in pair]


def test_sentences() -> list[str]:
    return [s for pair in PAIRS[CALIBRATION_PAIRS:] for s in pair]


def unrelated_rows(n_pairs: int) -> list[tuple[int, int]]:
    """Row pairs (a of pair i, b of pair i + shift) in test.npz: different topics."""
    return [(2 * i, 2 * ((i + UNRELATED_SHIFT) % n_pairs) + 1) for i in range(n_pairs)]


def write_data(tokenizer, out: Path, seq_len: int = SEQ_LEN) -> dict[str, Path]:
    """Tokenize both splits into .npz files (see the module docstring); no sentence may be truncated."""
    out.mkdir(parents=True, exist_ok=True)
    for text in calibration_sentences() + test_sentences():
        if len(tokenizer.encode(text)) > seq_len:
            raise ValueError(f"{text!r} has {len(tokenizer.encode(text))} tokens, over seq_len {seq_len}")
    paths = {"calibration": out / "calibration.npz", "test": out / "test.npz"}
    np.savez(paths["calibration"], **tokenizer.batch(calibration_sentences(), seq_len))
    np.savez(paths["test"], **tokenizer.batch(test_sentences(), seq_len))
    n = len(PAIRS) - CALIBRATION_PAIRS
    meta = {"sentences": test_sentences(), "paraphrase_rows": [(2 * i, 2 * i + 1) for i in range(n)],
            "unrelated_rows": unrelated_rows(n), "seq_len": seq_len}
    paths["pairs"] = out / "test_pairs.json"
    paths["pairs"].write_text(json.dumps(meta, indent=1) + "\n")
    return paths


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def pair_scores(emb: np.ndarray) -> dict[str, float]:
    """How the embeddings of test.npz's rows separate paraphrases from unrelated pairs.

    ranked: share of test pairs i whose paraphrase is closer to sentence a than the unrelated b is.
    """
    n = len(emb) // 2
    para = _cos(emb[0::2], emb[1::2])
    rows = unrelated_rows(n)
    unrel = _cos(emb[[a for a, _ in rows]], emb[[b for _, b in rows]])
    return {"paraphrase_cosine_mean": float(para.mean()), "unrelated_cosine_mean": float(unrel.mean()),
            "ranked": float(np.mean(para > unrel))}
