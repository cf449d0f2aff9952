"""Synthetic speech for training volume: espeak-ng voices, languages, rates and pitches, plus
festival voices when `text2wave` is installed. Output: 16-22 kHz wav files for `data prepare`."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

# Harvard sentences (IEEE 1969 recommended practice; public domain).
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
]
ESPEAK_VOICES = [
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-029",
    "en-gb-scotland",
    "de",
    "fr",
    "es",
    "it",
    "pl",
]
ESPEAK_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m5", "+f1", "+f2", "+f3", "+f4", "+klatt"]
FESTIVAL_VOICES = ["voice_kal_diphone", "voice_cmu_us_slt_arctic_hts"]


def synthesize(out: Path, count: int, seed: int = 0) -> int:
    """Write `count` utterances under `out`; returns how many were written."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (run `make system-deps`)")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    has_festival = shutil.which("text2wave") is not None
    written = 0
    for i in range(count):
        text = " ".join(rng.sample(SENTENCES, k=rng.randint(1, 3)))
        path = out / f"synth_{i:05d}.wav"
        if has_festival and rng.random() < 0.25:
            voice = rng.choice(FESTIVAL_VOICES)
            cmd = ["text2wave", "-eval", f"({voice})", "-o", str(path)]
            proc = subprocess.run(cmd, input=text, text=True, capture_output=True, timeout=120)
        else:
            voice = rng.choice(ESPEAK_VOICES) + rng.choice(ESPEAK_VARIANTS)
            cmd = [
                "espeak-ng",
                "-v",
                voice,
                "-s",
                str(rng.randint(120, 200)),
                "-p",
                str(rng.randint(20, 80)),
                "-w",
                str(path),
                text,
            ]
            proc = subprocess.run(cmd, capture_output=True, timeout=120)
        if proc.returncode == 0 and path.is_file() and path.stat().st_size > 1000:
            written += 1
        else:
            path.unlink(missing_ok=True)
    return written
