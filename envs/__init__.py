"""Gymnasium environments (simulators) used by our trainables and by RLlib; registered explicitly."""
