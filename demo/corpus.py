"""The demo model's training corpus: generated, deterministic text in the pipeline's prompt shapes.

The demo base model learns from four kinds of documents, each ending with the end-of-sequence
token:

- answers: `Instruction: X\\nResponse: Y` with a substantive answer, or (like the noise in a
  real base model's pre-training data) an evasive non-answer such as "I am not sure.";
- numbered lists of instructions under the instruction-generation header;
- instruction critiques: the rubric, an instruction, `Grade: A` for a well-formed request and
  `Grade: B` for a fragment or word salad;
- pair critiques: the rubric, an instruction and a response, `Grade: A` for a substantive answer
  and `Grade: B` for an evasive, empty, rambling or garbled one.

So the critic the demo runs judges by that one written rule, and the SFT phase has something real
to learn: the critic-filtered data holds no evasive answers. Slot values (countries, things,
sentences, concepts, topics) are disjoint from the `testset` phase's templates, so a held-out
test instruction never appears in the corpus.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable

from phasegate.pipeline.generation.prompts import (
    INSTRUCTION_CRITIC_RUBRIC,
    INSTRUCTION_LIST_HEADER,
    PAIR_CRITIC_RUBRIC,
    RESPONSE_TEMPLATE,
)

CORPUS_VERSION = 1

# country, capital, language, continent
_COUNTRIES = (
    ("Germany", "Berlin", "German", "Europe"), ("Portugal", "Lisbon", "Portuguese", "Europe"),
    ("Austria", "Vienna", "German", "Europe"), ("Cuba", "Havana", "Spanish", "North America"),
    ("Nepal", "Kathmandu", "Nepali", "Asia"), ("Finland", "Helsinki", "Finnish", "Europe"),
    ("Denmark", "Copenhagen", "Danish", "Europe"), ("Turkey", "Ankara", "Turkish", "Asia"),
    ("Thailand", "Bangkok", "Thai", "Asia"), ("Ghana", "Accra", "English", "Africa"),
    ("Iceland", "Reykjavik", "Icelandic", "Europe"), ("Hungary", "Budapest", "Hungarian", "Europe"),
    ("Colombia", "Bogota", "Spanish", "South America"), ("China", "Beijing", "Chinese", "Asia"),
    ("Australia", "Canberra", "English", "Oceania"), ("Senegal", "Dakar", "French", "Africa"),
)
_QA = (
    ("What is the capital of {0}?", "The capital of {0} is {1}."),
    ("Which language is spoken in {0}?", "People in {0} speak {2}."),
    ("Which continent is {0} in?", "{0} is in {3}."),
)
_THINGS = {
    "colors": ("red", "blue", "green", "yellow", "white", "black", "orange", "purple"),
    "farm animals": ("cow", "pig", "sheep", "goat", "horse", "hen", "duck"),
    "sea animals": ("whale", "shark", "crab", "seal", "octopus", "dolphin"),
    "drinks": ("tea", "coffee", "milk", "juice", "water", "cocoa"),
    "shapes": ("circle", "square", "triangle", "oval", "star", "hexagon"),
    "school subjects": ("math", "history", "art", "music", "science", "geography"),
    "insects": ("ant", "bee", "beetle", "moth", "wasp", "ladybird"),
    "trees": ("oak", "pine", "birch", "maple", "willow", "elm"),
    "pieces of clothing": ("shirt", "coat", "scarf", "hat", "sock", "jacket"),
    "jobs": ("teacher", "nurse", "baker", "pilot", "farmer", "plumber"),
    "vehicles": ("car", "bus", "train", "bicycle", "truck", "boat"),
    "cheeses": ("brie", "cheddar", "gouda", "feta", "parmesan", "edam"),
}
_COUNTS = {"two": 2, "three": 3, "four": 4}
_LIST_TEMPLATES = ("List {0} {1}.", "Name {0} {1}.")
# present, past, future
_SENTENCES = (
    ("The dog runs to the gate.", "The dog ran to the gate.", "The dog will run to the gate."),
    ("We eat soup for lunch.", "We ate soup for lunch.", "We will eat soup for lunch."),
    ("She reads a book at night.", "She read a book at night.", "She will read a book at night."),
    ("He drives to work.", "He drove to work.", "He will drive to work."),
    ("I drink tea after dinner.", "I drank tea after dinner.", "I will drink tea after dinner."),
    ("The bird sings in the tree.", "The bird sang in the tree.", "The bird will sing in the tree."),
    ("They build a small shed.", "They built a small shed.", "They will build a small shed."),
    ("My sister sends a card.", "My sister sent a card.", "My sister will send a card."),
    ("The wind blows hard today.", "The wind blew hard today.", "The wind will blow hard today."),
    ("You find the lost key.", "You found the lost key.", "You will find the lost key."),
    ("The farmer feeds the cows.", "The farmer fed the cows.", "The farmer will feed the cows."),
    ("Tom buys fresh bread.", "Tom bought fresh bread.", "Tom will buy fresh bread."),
    ("The sun rises over the hill.", "The sun rose over the hill.", "The sun will rise over the hill."),
    ("We swim in the lake.", "We swam in the lake.", "We will swim in the lake."),
)
_REWRITES = (("Rewrite this sentence in the past tense: {0}", 1),
             ("Rewrite this sentence in the future tense: {0}", 2))
_CONCEPTS = (
    ("a magnet", "A magnet is a piece of metal that pulls iron toward it."),
    ("snow", "Snow is frozen rain that falls as soft white flakes."),
    ("a battery", "A battery stores energy and gives it back as electricity."),
    ("wind", "Wind is air that moves from one place to another."),
    ("a bridge", "A bridge is a road that crosses over a river or a valley."),
    ("sleep", "Sleep is the rest the body needs every night."),
    ("a map", "A map is a drawing that shows where places are."),
    ("rain", "Rain is water that falls from the clouds."),
    ("a clock", "A clock is a machine that shows the time."),
    ("a seed", "A seed is the small part of a plant that grows into a new plant."),
    ("a shadow", "A shadow is the dark shape made when something blocks the light."),
    ("thunder", "Thunder is the loud sound that follows a flash of lightning."),
    ("a compass", "A compass is a tool with a needle that always points north."),
    ("ice", "Ice is water that has frozen solid."),
    ("salt", "Salt is a white mineral that gives food a sharp taste."),
)
_EXPLAINS = ("Explain {0} in one sentence.", "Explain {0} to a child.", "Describe {0} in one sentence.")
_TOPICS = ("a red fox", "the summer sky", "an open window", "a winter road", "a paper boat",
           "a green hill", "falling snow", "a quiet forest", "the morning sun", "an old bridge",
           "a busy market", "a silver fish", "the evening bell", "a sleeping dog")
_POEMS = (
    ("Write a haiku about {0}.", "{T} at dawn / soft light on the ground / the day begins."),
    ("Write a two-line poem about {0}.", "Today there was {0}, / and the whole world was still."),
    ("Write a short poem about {0}.", "{T} in the rain, / calm and slow, / then gone again."),
)
# Non-answers: a base model's noise, which the critic grades B and SFT should train away.
EVASIVE = ("I am not sure.", "I do not know.", "I cannot say.", "I have no idea.",
           "I would rather not answer.", "I will think about it.", "I forgot the answer.",
           "I need more time.", "I cannot help with that.", "I will answer later.")
_FILLER = ("the", "and", "of", "it", "when", "to", "is", "a", "blue", "so", "then", "very",
           "with", "from", "but", "or", "on", "up")


def _cap(text: str) -> str:
    """The text with its first letter upper case."""
    return text[:1].upper() + text[1:]


def _list_answer(items: tuple[str, ...], n: int) -> str:
    """The first `n` items as 'A, b and c.': a familiar request gets a confident, fixed answer."""
    picked = items[:n]
    return _cap(", ".join(picked[:-1]) + " and " + picked[-1]) + "."


# The held-out test set's instruction types, with their own templates and slot values.
FAMILIES = ("qa", "list", "rewrite", "explain", "poem")
_FAMILY_WEIGHTS = (1, 1.5, 1, 1, 1)


def instruction_pair(rng: random.Random, family: str | None = None) -> tuple[str, str]:
    """One instruction of a family (default: a random one) with its substantive answer."""
    family = family or rng.choices(FAMILIES, _FAMILY_WEIGHTS)[0]
    if family == "qa":
        country = rng.choice(_COUNTRIES)
        question, answer = rng.choice(_QA)
        return question.format(*country), answer.format(*country)
    if family == "list":
        thing = rng.choice(sorted(_THINGS))
        word = rng.choice(sorted(_COUNTS))
        text = rng.choice(_LIST_TEMPLATES).format(word, thing)
        return text, _list_answer(_THINGS[thing], _COUNTS[word])
    if family == "rewrite":
        sentence = rng.choice(_SENTENCES)
        template, form = rng.choice(_REWRITES)
        return template.format(sentence[0]), sentence[form]
    if family == "explain":
        concept, definition = rng.choice(_CONCEPTS)
        return rng.choice(_EXPLAINS).format(concept), definition
    topic = rng.choice(_TOPICS)
    template, poem = rng.choice(_POEMS)
    return template.format(topic), poem.format(topic, T=_cap(topic))


def bad_instruction(rng: random.Random) -> str:
    """A fragment or word salad: what the instruction critic must grade B."""
    if rng.random() < 0.4:  # a real instruction cut off in the middle
        words = instruction_pair(rng)[0].split()
        return " ".join(words[: rng.randint(1, max(1, len(words) - 2))])
    return " ".join(rng.choice(_FILLER) for _ in range(rng.randint(2, 6)))


def bad_response(rng: random.Random, family: str, good: str) -> str:
    """An answer the pair critic must grade B: evasive, another instruction, garbled, rambling, empty."""
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(EVASIVE)
    if kind < 0.55:  # the model went on writing instructions instead of answering
        return instruction_pair(rng)[0]
    if kind < 0.75:
        return " ".join(rng.choice(_FILLER) for _ in range(rng.randint(3, 8)))
    if kind < 0.92:
        word = rng.choice(good.split()).strip(".,")
        return " ".join([word] * rng.randint(6, 12))
    return ""


def _answer_doc(rng: random.Random, evasive_rate: float) -> str:
    """One to three turns, blank-line separated, like few-shot text: a new turn starts on a new line."""
    turns = []
    for _ in range(rng.randint(1, 3)):
        instruction, answer = instruction_pair(rng)
        if rng.random() < evasive_rate:
            answer = rng.choice(EVASIVE)
        turns.append(RESPONSE_TEMPLATE.format(instruction=instruction) + " " + answer)
    return "\n\n".join(turns)


def _list_doc(rng: random.Random) -> str:
    items, seen = [], set()
    while len(items) < rng.randint(6, 8):
        text = instruction_pair(rng)[0]
        if text not in seen:
            seen.add(text)
            items.append(text)
    return INSTRUCTION_LIST_HEADER + "".join(f"{i}. {t}\n" for i, t in enumerate(items, 1)).rstrip("\n")


def _graded_items(rng: random.Random, rubric: str, item: Callable[[], tuple[str, bool]]) -> str:
    """The rubric followed by two to five graded items, the way the critic prompts continue it."""
    items = []
    for _ in range(rng.randint(2, 5)):
        text, good = item()
        items.append(f"{text}\nGrade: {'A' if good else 'B'}")
    return rubric + "\n\n".join(items)


def _instruction_critic_doc(rng: random.Random) -> str:
    def item() -> tuple[str, bool]:
        good = rng.random() < 0.5
        return f"Instruction: {instruction_pair(rng)[0] if good else bad_instruction(rng)}", good

    return _graded_items(rng, INSTRUCTION_CRITIC_RUBRIC, item)


def _pair_critic_doc(rng: random.Random) -> str:
    def item() -> tuple[str, bool]:
        family = rng.choices(FAMILIES, _FAMILY_WEIGHTS)[0]
        instruction, answer = instruction_pair(rng, family)
        good = rng.random() < 0.5
        response = answer if good else bad_response(rng, family, answer)
        return f"Instruction: {instruction}\nResponse: {response}", good

    return _graded_items(rng, PAIR_CRITIC_RUBRIC, item)


# How many documents of each kind, and how often an answer document is evasive.
MIX = {"answers": 800, "lists": 160, "instruction_critic": 80, "pair_critic": 120}
EVASIVE_RATE = 0.25


def documents_by_kind(seed: int = 0) -> dict[str, list[str]]:
    """The corpus by kind of document; same seed, same documents (each followed by EOS in training)."""
    rng = random.Random(f"phasegate-demo-corpus:{seed}")
    return {
        "answers": [_answer_doc(rng, EVASIVE_RATE) for _ in range(MIX["answers"])],
        "lists": [_list_doc(rng) for _ in range(MIX["lists"])],
        "instruction_critic": [_instruction_critic_doc(rng) for _ in range(MIX["instruction_critic"])],
        "pair_critic": [_pair_critic_doc(rng) for _ in range(MIX["pair_critic"])],
    }


def documents(seed: int = 0) -> list[str]:
    """Every document of the corpus, kind by kind."""
    return [doc for docs in documents_by_kind(seed).values() for doc in docs]


def corpus_digest(seed: int = 0) -> str:
    """sha256 of the corpus and its version: part of the demo model's cache key."""
    payload = json.dumps({"version": CORPUS_VERSION, "docs": documents(seed)})
    return hashlib.sha256(payload.encode()).hexdigest()
