"""Dialog: understanding the caller (intent, slots, emotion, dialect) and answering from the shop."""
