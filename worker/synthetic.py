"""The example task: short instructions with one exact answer (arithmetic and word transforms).

The project writes every row itself from a seed, so it needs no download, and "the model got
better" is a number: exact-match accuracy on held-out rows before and after fine-tuning.
"""

from __future__ import annotations

import random

WORDS = ("apple", "river", "stone", "cloud", "tiger", "maple", "candle", "garden", "silver", "window",
         "pencil", "rocket", "forest", "button", "island", "planet", "spider", "violet", "marble", "anchor",
         "basket", "dragon", "harbor", "jacket", "lemon", "meadow", "orange", "pepper", "rabbit", "saddle")


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return f"What is {a} plus {b}? Answer with the number only.", str(a + b)


def _subtract(rng: random.Random) -> tuple[str, str]:
    a = rng.randint(0, 20)
    b = rng.randint(0, a)
    return f"What is {a} minus {b}? Answer with the number only.", str(a - b)


def _upper(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return f"Write the word {word} in capital letters. Answer with the word only.", word.upper()


def _first_letter(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return f"What is the first letter of the word {word}? Answer with the letter only.", word[0]


TASKS = (_add, _subtract, _upper, _first_letter)


def make_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [rng.choice(TASKS)(rng) for _ in range(count)]


def as_chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def as_alpaca(question: str, answer: str) -> dict:
    return {"instruction": question, "input": "", "output": answer}


def as_text(question: str, answer: str) -> dict:
    return {"text": f"Question: {question}\nAnswer: {answer}"}


FORMATS = {"chat": as_chat, "alpaca": as_alpaca, "text": as_text}
